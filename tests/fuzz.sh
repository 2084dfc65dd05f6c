#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in
# their own build directory and runs each for a bounded time
# (docs/fuzzing.md). Exits non-zero if any target crashes, leaks, hangs or
# runs out of memory, and prints the path of the input that did it.
#
#   tests/fuzz.sh [SECONDS] [TARGET ...]     # default 20 s each, all targets
#
# Environment: COMITY_FUZZ_SECONDS (instead of the argument),
# COMITY_FUZZ_BUILD_DIR (default <root>/build-fuzz), COMITY_FUZZ_JOBS (build
# parallelism, default 2), COMITY_FUZZ_WERROR (ON: clang warnings are
# errors; default OFF), COMITY_FUZZ_ARGS (extra libFuzzer flags, e.g.
# "-fork=2"). The corpus each run grows is kept in
# <build>/corpus/TARGET and reused by the next run; failing inputs are kept
# in <build>/artifacts/TARGET.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${COMITY_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${1:-${COMITY_FUZZ_SECONDS:-20}}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope peer_receive receipt treaty node_config)
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "$0: SECONDS must be a positive whole number, got '$seconds'" >&2; exit 2
fi

cxx=$(command -v clang++ || true)
if [ -z "$cxx" ]; then
  echo "$0: clang++ not found; run deploy/install-deps.sh (packages clang, libclang-rt-14-dev)" >&2
  exit 1
fi
# libFuzzer's runtime is packaged apart from clang on Debian.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
cat > "$probe/probe.cc" <<'EOF'
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }
EOF
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/probe.cc" -o "$probe/probe" \
    2>"$probe/err"; then
  cat "$probe/err" >&2
  echo "$0: clang cannot link libFuzzer; install libclang-rt-14-dev (deploy/install-deps.sh)" >&2
  exit 1
fi

export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
mkdir -p "$build"
# Several runs may share the build directory (tests/run.sh, a developer's
# long run): one configures and builds at a time.
exec 9>"$build/.fuzz-build.lock"
flock 9
# Warnings are errors in the gcc build (tests/run.sh), which gates them;
# here clang's extra warnings (e.g. -Wmissing-field-initializers on
# aggregates) are shown but do not stop fuzzing. COMITY_FUZZ_WERROR=ON to
# make them errors too.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCOMITY_WERROR="${COMITY_FUZZ_WERROR:-OFF}" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCOMITY_FUZZ=ON -DCOMITY_BUILD_TESTS=OFF \
  -DCOMITY_BUILD_BENCHMARKS=OFF >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
cmake --build "$build" -j"${COMITY_FUZZ_JOBS:-2}" --target "${build_targets[@]}"
flock -u 9
exec 9>&-

# This run's own directory: seeds, logs and the temporary directories the
# targets make (test credentials, node data; the targets remove theirs at
# exit, this catches those of a crashed one). Removed at the end unless a
# target failed (its log is there). The corpus and crash inputs are shared.
mkdir -p "$build/fuzz-runs"
run=$(mktemp -d "$build/fuzz-runs/run-XXXXXX")
export TMPDIR=$run/tmp
mkdir -p "$TMPDIR"
trap 'rm -rf "$probe" "$TMPDIR"' EXIT
# Crash reports with symbols; UBSan findings are fatal (also compiled so).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "${targets[@]}"; do
  bin=$build/bin/fuzz_$t
  seeds=$run/seeds/$t
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  log=$run/$t.log
  mkdir -p "$corpus" "$artifacts"
  COMITY_FUZZ_WRITE_SEEDS=$seeds "$bin" >"$log" 2>&1 || {
    echo "FAIL $t: could not write its seeds:"; tail -20 "$log"; failed+=("$t"); continue; }
  dict=()
  [ -f "$seeds.dict" ] && dict=(-dict="$seeds.dict")
  # Inputs that once crashed a target must stay fixed.
  regressions=$root/tests/fuzz/regressions/$t
  if [ -d "$regressions" ]; then
    if ! "$bin" "$regressions"/* >>"$log" 2>&1; then
      echo "FAIL $t: a regression input crashes again (tests/fuzz/regressions/$t):"
      tail -30 "$log"; failed+=("$t"); continue
    fi
  fi
  # shellcheck disable=SC2086  # COMITY_FUZZ_ARGS is a list of flags.
  if "$bin" "$corpus" "$seeds" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 \
      ${COMITY_FUZZ_ARGS:-} >>"$log" 2>&1; then
    runs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' ||
      true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    files=$(find "$corpus" -type f | wc -l)
    echo "ok   $t: ${runs:-?} inputs in ${seconds}s, ${cov:-cov: ?}, corpus $files files"
  else
    echo "FAIL $t (log: $log):"
    grep -E 'ERROR:|runtime error|SUMMARY|invariant broken|Test unit written' "$log" |
      head -20 || true
    for a in $(grep -o "Test unit written to [^ ]*" "$log" | awk '{print $5}'); do
      echo "  reproducer: $a"
      echo "  reproduce:  $bin $a"
    done
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "logs: $run" >&2
  echo "fuzzing FAILED: ${failed[*]} (docs/fuzzing.md, \"Reproducing a crash\")" >&2
  exit 1
fi
rm -rf "$run"
echo "fuzzing passed: ${targets[*]} (${seconds}s each)"
