#!/usr/bin/env bash
# Checks deploy/systemd/: `systemd-analyze verify` on comityd.service (with
# ExecStart pointed at the built comityd, which verify requires to exist),
# the hardening the unit must keep, the sysusers and tmpfiles snippets
# applied to a scratch root, and node.conf.example loading with
# `comityd --check-config` against real keys. Prints the unit's
# `systemd-analyze security` exposure score (not asserted).
# Exit 77 (skipped) only when systemd-analyze is not installed
# (deploy/install-deps.sh installs Debian's systemd package).
set -euo pipefail
root=$1 bin=$2
src=$root/deploy/systemd
command -v systemd-analyze >/dev/null || {
  echo "SKIP: systemd-analyze not found (apt-get install systemd; deploy/install-deps.sh does)"; exit 77; }
[ -x "$bin/comityd" ] || { echo "FAIL: $bin/comityd not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. systemd-analyze verify. It only warns (exit 0) on unknown or malformed
# directives, so any output at all is a failure.
unit=$tmp/comityd.service
sed "s#/usr/local/bin/comityd#$bin/comityd#g" "$src/comityd.service" > "$unit"
grep -q "ExecStart=$bin/comityd --config" "$unit" || fail "ExecStart not rewritten"
if ! out=$(systemd-analyze verify "$unit" 2>&1); then
  echo "$out"; fail "systemd-analyze verify failed"
fi
[ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify warned about the unit"; }
echo "systemd-analyze verify: OK"

# 2. The hardening and operations settings the deployment relies on.
for line in 'User=comity' 'Group=comity' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
    'ProtectHome=yes' 'PrivateTmp=yes' 'StateDirectory=comity' 'ConfigurationDirectory=comity' \
    'ReadWritePaths=/var/lib/comity' 'CapabilityBoundingSet=' \
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'SystemCallFilter=@system-service' \
    'Restart=on-failure' 'KillSignal=SIGTERM' \
    'ExecStartPre=/usr/local/bin/comityd --config /etc/comity/node.conf --check-config'; do
  grep -qxF "$line" "$src/comityd.service" || fail "comityd.service lacks the line: $line"
done
grep -qE '^LimitNOFILE=[0-9]+$' "$src/comityd.service" || fail "comityd.service: no LimitNOFILE"
# Writable: the state directory only.
[ "$(grep -c '^ReadWritePaths=' "$src/comityd.service")" = 1 ] || fail "more than one ReadWritePaths"
# The stop timeout leaves room for comityd's 10 s drain (server/main.cc).
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\?$/\1/p' "$src/comityd.service")
[ -n "$stop" ] && [ "$stop" -gt 10 ] || fail "TimeoutStopSec must exceed the 10 s drain (is '$stop')"
grep -q 'kDrainGrace = absl::Seconds(10)' "$root/server/main.cc" ||
  fail "server/main.cc's drain grace changed: update TimeoutStopSec and this test"
echo "hardening directives: OK"

# 3. Exposure score, for the record.
if sec=$(systemd-analyze security --offline=yes "$unit" 2>&1); then
  echo "$sec" | grep 'Overall exposure level' || true
else
  echo "note: systemd-analyze security --offline unavailable here: $(echo "$sec" | tail -1)"
fi

# 4. sysusers and tmpfiles on a scratch root (chown needs root).
if [ "$(id -u)" = 0 ]; then
  r=$tmp/root
  mkdir -p "$r/etc/comity" "$r/var/lib"
  systemd-sysusers --root="$r" - < "$src/comity.sysusers" >/dev/null 2>&1 ||
    fail "systemd-sysusers rejected comity.sysusers"
  grep -q '^comity:' "$r/etc/passwd" || fail "sysusers did not create user comity"
  touch "$r/etc/comity/node.key" "$r/etc/comity/signing.key"
  chmod 644 "$r/etc/comity/node.key" "$r/etc/comity/signing.key"
  if ! out=$(systemd-tmpfiles --root="$r" --create - < "$src/comity.tmpfiles" 2>&1); then
    echo "$out"; fail "systemd-tmpfiles rejected comity.tmpfiles"
  fi
  uid=$(awk -F: '$1=="comity"{print $3}' "$r/etc/passwd")
  [ "$(stat -c '%a %u' "$r/var/lib/comity")" = "700 $uid" ] || fail "/var/lib/comity not 0700 comity"
  for k in node.key signing.key; do
    [ "$(stat -c '%a %u' "$r/etc/comity/$k")" = "600 $uid" ] || fail "$k not 0600 comity"
  done
  echo "sysusers and tmpfiles: OK"
else
  echo "note: not root; sysusers/tmpfiles not applied to a scratch root"
fi

# 5. node.conf.example loads, with real keys where it expects them.
"$root/certs/make-network.sh" "$tmp/net" FR JP DE >/dev/null
etc=$tmp/etc-comity
mkdir -p "$etc/peers"
cp "$tmp/net/FR/node.pem" "$tmp/net/FR/node.key" "$tmp/net/FR/signing.key" "$etc/"
cp "$tmp/net/FR/ca.pem" "$etc/operator-ca.pem"
cp "$tmp/net/JP/ca.pem" "$etc/peers/JP-ca.pem"
cp "$tmp/net/DE/ca.pem" "$etc/peers/DE-ca.pem"
chmod 600 "$etc/node.key" "$etc/signing.key"
sed -e "s#/etc/comity/#$etc/#g" -e "s#/var/lib/comity#$tmp/state#" \
    -e "s#/usr/local/share/comity/treaties#$root/deploy/treaties#" \
    "$src/node.conf.example" > "$etc/node.conf"
out=$("$bin/comityd" --config "$etc/node.conf" --check-config 2>&1) || {
  echo "$out"; fail "node.conf.example does not load"; }
grep -q 'configuration OK (party FR, 2 peers)' <<< "$out" || { echo "$out"; fail "unexpected: $out"; }
echo "node.conf.example: $out"
echo "deploy/systemd: OK"
