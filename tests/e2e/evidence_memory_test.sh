#!/usr/bin/env bash
# A response whose evidence file (1.5 GiB) is larger than the memory each
# node may use (ulimit -v 1200 MiB): it streams through, and the receiver
# keeps it only with the right SHA-256.
set -euo pipefail
root=$1 bin=$2
dir=$(mktemp -d)
# The file is written three times (source, sender's store, receiver's store).
free_kib=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
if [ "$free_kib" -lt $((6 * 1024 * 1024)) ]; then
  echo "SKIPPED: needs 6 GiB free in $dir, has $((free_kib / 1024)) MiB"
  rmdir "$dir"
  exit 77
fi
trap 'rm -rf "$dir"' EXIT
out=$("$root/bench/evidence_bench.sh" --bin "$bin" --size-mib 1536 --memory-limit-mb 1200 \
      --dir "$dir/bench")
echo "$out"
grep -q "FR: fetch + SHA-256 + fsync'd store" <<< "$out"
echo "evidence larger than the nodes' memory limit: OK"
