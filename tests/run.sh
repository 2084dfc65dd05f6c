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

# The store suite and the end-to-end suites again on PostgreSQL: a throwaway
# server on a Unix socket, each test its own database (docs/storage.md).
pg_dir=$(mktemp -d /tmp/comity-pg-XXXXXX)
trap '"$root/tests/store/postgres_server.sh" stop "$pg_dir"' EXIT
pg_url=$("$root/tests/store/postgres_server.sh" start "$pg_dir")
COMITY_TEST_POSTGRES=$pg_url \
  ctest -j2 --output-on-failure --timeout 300 -R 'StoreTest|PgReplicasTest|E2eTest|TwoNodesTest|crash_safety'

# Fuzzing: each libFuzzer target for a bounded run, built with clang in
# build-fuzz (docs/fuzzing.md). Non-zero, with the reproducer, on a crash.
"$root/tests/fuzz.sh" "${COMITY_FUZZ_SECONDS:-15}"
