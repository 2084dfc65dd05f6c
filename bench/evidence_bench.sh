#!/usr/bin/env bash
# Evidence transfer benchmark: two real comityd processes on loopback with
# mutual TLS, a response carrying one large file (default 4 GiB) that the
# requesting node streams, hashes, stores and verifies. Prints MB/s and the
# peak RSS (VmHWM) of both nodes.
#
#   bench/evidence_bench.sh [--bin build/bin] [--size-mib 4096] [--dir DIR]
#                           [--memory-limit-mb N]   (ulimit -v for each node)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/bin
size_mib=4096
dir=${TMPDIR:-/tmp}/comity-evidence-bench
limit=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --size-mib) size_mib=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --memory-limit-mb) limit=(--memory-limit-mb "$2"); shift 2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
base=$("$root/tests/pick_base_port.sh")
rm -rf "$dir"
mkdir -p "$dir"
"$root/deploy/local-network.sh" --dir "$dir/net" --bin "$bin" --base-port "$base" --keep "${limit[@]}" >/dev/null
cleanup() { kill $(cat "$dir"/net/*/comityd.pid) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

fr=(--connect "$dir/net/FR/alice.conf")
jp=(--connect "$dir/net/JP/bob.conf")
id=$("$bin/comity" "${fr[@]}" submit --to JP --type PRESERVATION --offence DATA_INTERFERENCE \
  --authority "bench" --facts "bench" --data-sought "image" --relation "C2" --custodian "DC" \
  --necessity "rotation" --intent-mla --json | sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p')
# Delivery is asynchronous (retried if the first attempt met JP still
# starting): JP accepts once it holds the request.
for _ in $(seq 1 200); do
  "$bin/comity" "${jp[@]}" show "$id" >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin/comity" "${jp[@]}" accept "$id" >/dev/null

file=$dir/image.raw
echo "writing a ${size_mib} MiB evidence file..." >&2
head -c $((size_mib * 1024 * 1024)) /dev/zero > "$file"

echo "JP adds it to its evidence store and responds..." >&2
t0=$(date +%s.%N)
"$bin/comity" "${jp[@]}" respond "$id" --text "disk image" --file "$file" --final >/dev/null
t1=$(date +%s.%N)
echo "FR fetches, hashes and stores it..." >&2
waited=0
until "$bin/comity" --connect "$dir/net/FR/carol.conf" audit log --request "$id" \
    --type EVIDENCE_RECEIVED | grep -q "SHA-256 verified"; do
  sleep 0.2
  waited=$((waited + 1))
  if [ "$waited" -gt 3000 ]; then
    echo "$0: FR did not receive the evidence within 10 minutes; its log:" >&2
    tail -20 "$dir/net/FR/comityd.log" >&2
    exit 1
  fi
  for p in FR JP; do
    kill -0 "$(cat "$dir/net/$p/comityd.pid")" 2>/dev/null || {
      echo "$0: comityd of $p died; its log:" >&2; tail -20 "$dir/net/$p/comityd.log" >&2; exit 1; }
  done
done
t2=$(date +%s.%N)

rss() { awk '/VmHWM/ {print $2 / 1024}' "/proc/$(cat "$dir/net/$1/comityd.pid")/status"; }
vm() { awk '/VmPeak/ {print $2 / 1024}' "/proc/$(cat "$dir/net/$1/comityd.pid")/status"; }
printf '%-52s %12s\n' "evidence transfer (mutual TLS, loopback)" "figure"
printf '%-52s %12d\n' "file size, MiB" "$size_mib"
printf '%-52s %12.0f\n' "JP: import into its store (copy + SHA-256), MB/s" \
  "$(echo "$size_mib * 1.048576 / ($t1 - $t0)" | bc -l)"
printf '%-52s %12.0f\n' "FR: fetch + SHA-256 + fsync'd store, MB/s" \
  "$(echo "$size_mib * 1.048576 / ($t2 - $t1)" | bc -l)"
printf '%-52s %12.1f\n' "JP (sender) peak RSS, MB" "$(rss JP)"
printf '%-52s %12.1f\n' "FR (receiver) peak RSS, MB" "$(rss FR)"
printf '%-52s %12.1f\n' "FR (receiver) peak virtual memory, MB" "$(vm FR)"
