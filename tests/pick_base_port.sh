#!/usr/bin/env bash
# Prints a base port B for deploy/local-network.sh and deploy/three-party.sh
# (which use B + 10*i, B + 10*i + 1 and B + 10*i + 2): below the kernel's ephemeral range
# (32768 and up), where tests binding port 0 and outgoing connections take
# theirs, and with none of B .. B+99 listening now (from /proc/net/tcp*).
# A node refuses to start on a taken port (docs/deploy.md), so the scripts
# that use it should still retry with another base on failure.
set -euo pipefail
listening() {
  local f sl local_addr rem state rest
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    while read -r sl local_addr rem state rest; do
      if [ "$state" = "0A" ]; then echo $((16#${local_addr##*:})); fi
    done < <(tail -n +2 "$f")
  done | sort -un
}
taken=$(listening)
for _ in $(seq 1 50); do
  base=$((20000 + (RANDOM % 120) * 100))
  clash=0
  for p in $taken; do
    if [ "$p" -ge "$base" ] && [ "$p" -lt $((base + 100)) ]; then clash=1; break; fi
  done
  if [ "$clash" -eq 0 ]; then echo "$base"; exit 0; fi
done
echo "$0: no free block of 100 ports between 20000 and 32000" >&2
exit 1
