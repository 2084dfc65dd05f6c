#!/usr/bin/env bash
# From a fresh Debian 12 machine to a local Comity network exchanging a
# signed request: installs packages, builds, runs deploy/local-network.sh.
# Extra arguments go to local-network.sh (e.g. --keep, --parties FR,JP,DE).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/install-deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j2 --target comityd comity
exec "$root/deploy/local-network.sh" --bin "$root/build/bin" "$@"
