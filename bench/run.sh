#!/usr/bin/env bash
# Runs the end-to-end benchmarks and prints their markdown tables
# (docs/performance.md, "End to end").
#
#   bench/run.sh [--build DIR] [--requests N] [--e2e-only|--rss-only|--audit-only]
#                [--audit-requests N] [-- E2E_FLAGS...]
#
# --build: a configured build directory (default: build); the benchmarks and
#   comityd are built there first (Release or RelWithDebInfo for figures).
# --requests: stored requests for store_rss_bench (default 100000; the
#   documented figure uses 1000000, which takes several minutes and ~4 GB
#   of /dev/shm during the fill, then the same on disk).
# --audit-only / --audit-requests N: only `comity audit verify` and `audit
#   export` of a log of N requests (default 1000000; 4 entries and a signed
#   head each), their time and the peak RSS of the node and the CLI
#   (tests/e2e/audit_memory_e2e_test.cc in its bench mode; ~1 GB of disk).
# Anything after -- goes to e2e_bench (e.g. --duration-s 20 --rates 200,500,1000).
# The default run takes about two minutes. Set CMAKE_BUILD_PARALLEL_LEVEL for a parallel build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
requests=100000
run_e2e=1
run_rss=1
run_audit=0
audit_requests=1000000
e2e_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --e2e-only) run_rss=0; shift ;;
    --rss-only) run_e2e=0; shift ;;
    --audit-only) run_e2e=0; run_rss=0; run_audit=1; shift ;;
    --audit-requests) audit_requests=$2; run_audit=1; shift 2 ;;
    --) shift; e2e_args=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$build/CMakeCache.txt" ] || {
  echo "$0: $build is not a configured build directory; run" \
       "cmake -S $root -B $build -DCMAKE_BUILD_TYPE=RelWithDebInfo first, or pass --build" >&2
  exit 1
}
type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
case "$type" in
  Release|RelWithDebInfo) ;;
  *) echo "$0: warning: $build is a '$type' build; figures need Release or RelWithDebInfo" >&2 ;;
esac
targets=(comityd e2e_bench store_rss_bench)
[ "$run_audit" = 1 ] && targets+=(comity audit_memory_e2e_test)
cmake --build "$build" --target "${targets[@]}" >&2

echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
     "$(free -g | awk '/^Mem:/ {print $2}') GiB; build type $type; commit" \
     "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
if [ "$run_e2e" = 1 ]; then
  "$build/bin/e2e_bench" ${e2e_args[@]+"${e2e_args[@]}"}
  echo
fi
if [ "$run_rss" = 1 ]; then
  "$build/bin/store_rss_bench" --requests "$requests"
fi
if [ "$run_audit" = 1 ]; then
  echo
  COMITY_AUDIT_MEMORY_REQUESTS=$audit_requests "$build/bin/audit_memory_e2e_test" |
    sed -n '/^## /,/^|.*offline/p'
fi
