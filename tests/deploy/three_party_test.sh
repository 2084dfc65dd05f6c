#!/usr/bin/env bash
# Runs deploy/three-party.sh against the built binaries: FR's requests to JP
# and DE are both accepted and executed with every step verified, all three
# audit logs verify, and the nodes are stopped cleanly (drained) at the end.
set -euo pipefail
root=$1 bin=$2
dir=$(mktemp -d)
trap 'for f in "$dir"/net/*/comityd.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
port=$("$root/tests/pick_base_port.sh")
out=$("$root/deploy/three-party.sh" --dir "$dir/net" --bin "$bin" --base-port "$port" 2>&1) || {
  echo "$out"; for l in "$dir"/net/*/comityd.log; do echo "== $l"; cat "$l"; done; exit 1; }
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
check() { grep -qE -- "$1" <<< "$out" || fail "output lacks: $1"; }
check '^receipt: +JP key JP-1: verified'
check '^receipt: +DE key DE-1: verified'
check '^assessment DE: BINDING under ETS185'
[ "$(grep -cE '^[0-9a-f-]{36} +sent +FR +(JP|DE) +PRESERVATION +CASE_EXECUTED' <<< "$out")" = 2 ] ||
  fail "FR does not list both requests as CASE_EXECUTED"
for p in JP DE; do
  check "1\\. ACCEPT -> CASE_ACCEPTED by $p \\(bob\\).*signature verified"
  check "2\\. RESPOND -> CASE_EXECUTED by $p \\(bob\\).*signature verified"
done
for p in FR JP DE; do check "^$p: [0-9]+ entries, root [0-9a-f]{64}, consistent \\("; done
# Stopped at the end, each through the drain (exit path of SIGTERM).
for p in FR JP DE; do
  pid=$(cat "$dir/net/$p/comityd.pid")
  ! kill -0 "$pid" 2>/dev/null || fail "comityd of $p still running"
  grep -q '"shutdown_complete"' "$dir/net/$p/comityd.log" || fail "$p did not log shutdown_complete"
done
echo "three-party network: OK"
