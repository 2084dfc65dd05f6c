#!/usr/bin/env bash
# Runs the README's main command (deploy/local-network.sh) against the built
# binaries and checks that a request was sent, received and its receipt
# verified on both sides.
set -euo pipefail
root=$1 bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
port=$("$root/tests/pick_base_port.sh")
out=$("$root/deploy/local-network.sh" --dir "$dir/net" --bin "$bin" --base-port "$port" 2>&1) || {
  echo "$out"; for l in "$dir"/net/*/comityd.log; do echo "== $l"; cat "$l"; done; exit 1; }
echo "$out"
check() { grep -qE -- "$1" <<< "$out" || { echo "FAIL: output lacks: $1"; exit 1; }; }
check '^delivery: +DELIVERED'
check '^signature: FR key FR-1: verified'
check '^receipt: +JP key JP-1: verified'
check '^assessment FR: BINDING under ETS185'
check '^assessment JP: BINDING under ETS185'
check 'REQUEST_RECEIVED +peer:FR +request '
check '^case: +CASE_ACCEPTED'
check '1\. ACCEPT -> CASE_ACCEPTED by JP \(bob\).*signature verified'
[ "$(grep -c 'consistent (' <<< "$out")" -ge 2 ] || { echo "FAIL: audit logs not verified on both sides"; exit 1; }
# Whose log each verification is.
check "^== FR's audit log, verified by FR's auditor"
check "^== JP's audit log, verified by JP's auditor"
check '^FR: [0-9]+ entries, root [0-9a-f]{64}, consistent \('
check '^JP: [0-9]+ entries, root [0-9a-f]{64}, consistent \('
# The narration names case states as the CLI prints them; delivery states
# only where it says so.
check "^== FR: its sent requests, each with its case state \(CASE_DELIVERED"
check "^== JP \(operator bob, reviewer\) accepts: CASE_DELIVERED -> CASE_ACCEPTED"
check "^== FR's metrics .*: its requests by delivery state"
# Metrics on: FR's endpoint counts the delivered request.
check '^comity_requests\{direction="sent",partner="JP",state="DELIVERED"\} 1$'
grep -q '^metrics_listen_address: "127.0.0.1:' "$dir/net/FR/node.conf" || { echo "FAIL: no metrics port in FR/node.conf"; exit 1; }
# An admin exists and can take a backup.
[ -f "$dir/net/FR/admin.conf" ] || { echo "FAIL: no FR/admin.conf"; exit 1; }
check "^wrote $dir/net/FR/backup/comity.db \\([0-9]+ bytes, sha256 [0-9a-f]{64}\\)"
check 'received +FR +JP +PRESERVATION +CASE_DELIVERED'
check 'sent +FR +JP +PRESERVATION +CASE_DELIVERED'
[ "$(grep -c 'receipt:   JP key JP-1: verified' <<< "$out")" -ge 3 ] || { echo "FAIL: receipt not verified on both sides"; exit 1; }
# Private keys were written with mode 0600.
bad=$(find "$dir/net" -name '*.key' ! -perm 600 | head -1)
[ -z "$bad" ] || { echo "FAIL: $bad is not mode 0600"; exit 1; }
echo "local network: OK"
