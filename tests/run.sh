#!/usr/bin/env bash
# Installs what is needed, builds everything with warnings as errors, and
# runs every test (GoogleTest suites and the local network script) with ctest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${COMITY_BUILD_DIR:-$root/build}
"$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOMITY_WERROR=ON >/dev/null
cmake --build "$build" -j2
cd "$build"
ctest -j2 --output-on-failure --timeout 300
