#!/usr/bin/env bash
# Runs the end-to-end benchmarks and prints their markdown tables
# (docs/performance.md, "End to end").
#
#   bench/run.sh [--build DIR] [--requests N] [--e2e-only|--rss-only|--audit-only]
#                [--audit-requests N] [--preload LIB]
#                [--compare OLD_COMITYD] [--compare-preload LIB] [--rounds N]
#                [-- E2E_FLAGS...]
#
# --build: a configured build directory (default: build); the benchmarks and
#   comityd are built there first (Release or RelWithDebInfo for figures).
# --requests: stored requests for store_rss_bench (default 100000; the
#   documented figure uses 1000000, which takes several minutes and ~4 GB
#   of /dev/shm during the fill, then the same on disk).
# --preload: run the nodes with LD_PRELOAD=LIB, another allocator (e2e_bench
#   only), e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (apt-get install
#   libjemalloc2) or /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
#   (apt-get install libtcmalloc-minimal4).
# --compare: e2e_bench only, N rounds (default 3) alternating OLD_COMITYD and
#   DIR/bin/comityd (old-new, new-old, ...: drift of the machine falls on
#   both), then a before/after table: each round's figure and the ratio of
#   the medians. Default E2E_FLAGS then: --duration-s 5 --concurrency 16,64
#   --rates 500 --echo-duration-s 0 (about 2 minutes). An old binary:
#     git worktree add /tmp/old REV && cmake -S /tmp/old -B /tmp/old/build \
#       -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build /tmp/old/build --target comityd
#   then --compare /tmp/old/build/bin/comityd.
# --compare-preload: the same, "before" being the nodes without LIB and
#   "after" with LD_PRELOAD=LIB (an allocator's effect on one binary); with
#   --compare too, before = OLD_COMITYD without LIB, after = new with LIB.
# --audit-only / --audit-requests N: only `comity audit verify` and `audit
#   export` of a log of N requests (default 1000000; 4 entries and a signed
#   head each), their time and the peak RSS of the node and the CLI
#   (tests/e2e/audit_memory_e2e_test.cc in its bench mode; ~1 GB of disk).
# Anything after -- goes to e2e_bench (e.g. --duration-s 20 --rates 200,500,1000).
# The default run takes about three minutes. Set CMAKE_BUILD_PARALLEL_LEVEL for a parallel build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
requests=100000
run_e2e=1
run_rss=1
preload=
compare=
compare_preload=
rounds=3
run_audit=0
audit_requests=1000000
e2e_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --e2e-only) run_rss=0; shift ;;
    --rss-only) run_e2e=0; shift ;;
    --preload) preload=$2; shift 2 ;;
    --compare) compare=$2; run_rss=0; shift 2 ;;
    --compare-preload) compare_preload=$2; run_rss=0; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --audit-only) run_e2e=0; run_rss=0; run_audit=1; shift ;;
    --audit-requests) audit_requests=$2; run_audit=1; shift 2 ;;
    --) shift; e2e_args=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
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
if [ -n "$preload" ] && [ -n "$compare_preload" ]; then
  echo "$0: --preload and --compare-preload: give one (the first applies to both sides)" >&2
  exit 2
fi
comparing=0
[ -z "$compare$compare_preload" ] || comparing=1
if [ "$comparing" = 1 ]; then
  [ -z "$compare" ] || [ -x "$compare" ] || { echo "$0: --compare $compare: not an executable comityd" >&2; exit 2; }
  for a in ${e2e_args[@]+"${e2e_args[@]}"}; do
    case "$a" in --comityd|--comityd=*|--summary|--summary=*)
      echo "$0: --compare sets e2e_bench's $a itself" >&2; exit 2 ;;
    esac
  done
  [ ${#e2e_args[@]} -gt 0 ] ||
    e2e_args=(--duration-s 5 --concurrency 16,64 --rates 500 --echo-duration-s 0)
  cmake --build "$build" --target comityd e2e_bench >&2
else
  targets=(comityd e2e_bench store_rss_bench)
  [ "$run_audit" = 1 ] && targets+=(comity audit_memory_e2e_test)
  cmake --build "$build" --target "${targets[@]}" >&2
fi
[ -z "$preload" ] || e2e_args=(--preload "$preload" ${e2e_args[@]+"${e2e_args[@]}"})

echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
     "$(free -g | awk '/^Mem:/ {print $2}') GiB; build type $type; commit" \
     "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo

if [ "$comparing" = 1 ]; then
  new=$build/bin/comityd
  old=${compare:-$new}
  old_args=()
  new_args=()
  [ -z "$compare_preload" ] || new_args=(--preload "$compare_preload")
  out=$(mktemp -d "${TMPDIR:-/tmp}/comity-compare-XXXXXX")
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for which in $order; do
      if [ "$which" = new ]; then
        bin=$new; extra=(${new_args[@]+"${new_args[@]}"})
      else
        bin=$old; extra=(${old_args[@]+"${old_args[@]}"})
      fi
      echo "round $r/$rounds: $which ($bin ${extra[*]+"${extra[*]}"})..." >&2
      "$build/bin/e2e_bench" "${e2e_args[@]}" ${extra[@]+"${extra[@]}"} --comityd "$bin" \
        --summary "$out/$which.$r.tsv" > "$out/$which.$r.md"
    done
  done
  echo "## Before / after (\`bench/run.sh --compare\`)"
  echo
  echo "before: $old ($(stat -c %y "$old" | cut -d. -f1)) ${old_args[*]+"${old_args[*]}"}"
  echo "after: $new ($(stat -c %y "$new" | cut -d. -f1)) ${new_args[*]+"${new_args[*]}"}"
  echo "Rounds: $rounds, alternated (old first in odd rounds); e2e_bench ${e2e_args[*]}."
  echo "Each round's full tables: $out/{old,new}.ROUND.md"
  echo
  # One row per figure, in the order e2e_bench prints them.
  awk -F'\t' -v rounds="$rounds" '
    function median(list, n,   a, i, j, t) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function fmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.3g", v) }
    FNR == 1 { which = FILENAME ~ /\/old\.[0-9]+\.tsv$/ ? "old" : "new" }
    {
      if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
      vals[which, $1] = vals[which, $1] (vals[which, $1] == "" ? "" : " ") $2
      shown[which, $1] = shown[which, $1] (shown[which, $1] == "" ? "" : " / ") fmt($2)
    }
    END {
      print "| figure | before, each round | after, each round | after / before (medians) |"
      print "|---|---|---|---|"
      for (i = 1; i <= n; i++) {
        f = order[i]; mo = median(vals["old", f]); mn = median(vals["new", f])
        ratio = (vals["old", f] != "" && vals["new", f] != "" && mo != 0) ? sprintf("%.3f", mn / mo) : ""
        printf "| %s | %s | %s | %s |\n", f, shown["old", f], shown["new", f], ratio
      }
    }' $(for r in $(seq 1 "$rounds"); do echo "$out/old.$r.tsv $out/new.$r.tsv"; done)
  exit 0
fi
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
