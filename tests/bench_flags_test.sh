#!/bin/bash
# The benches refuse bad flag values before they start anything: exit 2 and a
# message naming the flag and what to give (a rate of 0 used to run a phase
# and print a p50 of -9223372036845.9 ms).
# usage: bench_flags_test.sh BIN_DIR
set -u
bin=$1
fails=0
expect_refused() {  # expect_refused FLAG_NAME WHY_SUBSTRING BINARY ARGS...
  local flag=$1 why=$2 binary=$3
  shift 3
  local err rc
  err=$(timeout 20 "$bin/$binary" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -ne 2 ] || [[ "$err" != *"--$flag"* ]] || [[ "$err" != *"$why"* ]]; then
    echo "FAIL: $binary $*: exit $rc, stderr: $err (expected exit 2 naming --$flag, '$why')"
    fails=$((fails + 1))
  else
    echo "ok: $binary $*: $err"
  fi
}
expect_refused rates "out of range" e2e_bench --rates 0
expect_refused rates "out of range" e2e_bench --rates 200,-5
expect_refused rates "not a whole number" e2e_bench --rates 2x0
expect_refused concurrency "out of range" e2e_bench --concurrency 0
expect_refused duration-s "out of range" e2e_bench --duration-s 0
expect_refused duration-s "not a number" e2e_bench --duration-s nan
expect_refused duration-s "not a number" e2e_bench --duration-s inf
expect_refused echo-duration-s "out of range" e2e_bench --echo-duration-s -1
expect_refused channels "out of range" e2e_bench --channels 0
expect_refused warmup "out of range" e2e_bench --warmup -1
expect_refused crypto-sample-s "out of range" e2e_bench --crypto-sample-s 0
expect_refused runs "out of range" store_query_bench --runs 0
expect_refused requests "out of range" store_query_bench --requests 0
expect_refused threads "out of range" store_rss_bench --threads 0
exit $((fails > 0))
