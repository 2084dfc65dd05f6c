#!/usr/bin/env bash
# A response whose evidence file (1.5 GiB) is larger than the memory each
# node may use (ulimit -v 1200 MiB): it streams through, and the receiver
# keeps it only with the right SHA-256.
set -euo pipefail
root=$1 bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$("$root/bench/evidence_bench.sh" --bin "$bin" --size-mib 1536 --memory-limit-mb 1200 \
      --dir "$dir/bench")
echo "$out"
grep -q "FR: fetch + SHA-256 + fsync'd store" <<< "$out"
echo "evidence larger than the nodes' memory limit: OK"
