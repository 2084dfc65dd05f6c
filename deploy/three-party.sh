#!/usr/bin/env bash
# Three parties on one machine, no containers: FR asks JP and DE for
# preservation, both accept and respond, FR sees both cases executed, and all
# three audit logs verify.
#
#   deploy/three-party.sh [--dir DIR] [--base-port 7400] [--bin BUILD_DIR] [--keep]
#
# Starts the network with deploy/local-network.sh --parties FR,JP,DE (which
# makes the keys, starts the nodes and sends FR's first request, to JP, which
# JP accepts), then works the rest of the case across the three. Without
# --keep the nodes are stopped at the end (stop them otherwise with:
# kill $(cat DIR/*/comityd.pid)).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${TMPDIR:-/tmp}/comity-three-party
base_port=7400
bin=$root/build/bin
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

stop_nodes() {
  for f in "$dir"/*/comityd.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  # comityd drains for up to 10 s on SIGTERM.
  for f in "$dir"/*/comityd.pid; do
    [ -f "$f" ] || continue
    for _ in $(seq 1 150); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
  done
}
if [ "$keep" = 0 ]; then trap stop_nodes EXIT; fi

comity() { "$bin/comity" "$@"; }
# wait_case PARTY ID STATE: until PARTY's node shows the case in STATE.
wait_case() {
  for _ in $(seq 1 100); do
    comity --connect "$dir/$1/alice.conf" show "$2" | grep -q "^case: *$3" && return 0
    sleep 0.1
  done
  echo "$0: $1 does not see case $2 in $3:" >&2
  comity --connect "$dir/$1/alice.conf" show "$2" >&2 || true
  return 1
}

# Into a file, not a pipe: the nodes it leaves running keep its stdout open.
log=$(mktemp)
status=0
"$root/deploy/local-network.sh" --dir "$dir" --parties FR,JP,DE --base-port "$base_port" \
  --bin "$bin" --keep > "$log" || status=$?
cat "$log"
to_jp=$(sed -n 's/^submitted \([0-9a-f-]*\): FR -> JP.*/\1/p' "$log" | head -1)
rm -f "$log"
[ "$status" = 0 ] || exit "$status"
[ -n "$to_jp" ] || { echo "$0: local-network.sh printed no request id" >&2; exit 1; }

echo
echo "== FR (operator alice) also asks DE to preserve data"
out=$(comity --connect "$dir/FR/alice.conf" submit --to DE \
  --type PRESERVATION --offence DATA_INTERFERENCE --penalty-months 60 --urgency URGENT \
  --authority "Parquet de Paris, section J3 (cybercriminalite)" \
  --facts "Ransomware deployed on a hospital network; a staging server in DE" \
  --data-sought "Subscriber and connection logs of the server at 198.51.100.23" \
  --relation "The server stored the encrypted payload before deployment" \
  --custodian "Example Rechenzentrum GmbH, DE" \
  --necessity "Logs are rotated after 7 days" \
  --intent-mla --confidential --tlp AMBER --use-limit "criminal proceedings only")
echo "$out"
to_de=$(sed -n 's/^submitted \([0-9a-f-]*\):.*/\1/p' <<< "$out")
[ -n "$to_de" ] || { echo "$0: submit did not print a request id" >&2; exit 1; }
# Delivery is asynchronous (retried with backoff if the first attempt met
# DE still starting): DE accepts once it holds the request.
for _ in $(seq 1 200); do
  comity --connect "$dir/DE/bob.conf" show "$to_de" >/dev/null 2>&1 && break
  sleep 0.1
done

echo
echo "== DE (operator bob) accepts"
comity --connect "$dir/DE/bob.conf" accept "$to_de"
wait_case FR "$to_de" CASE_ACCEPTED

echo
echo "== JP and DE respond: the data is preserved"
comity --connect "$dir/JP/bob.conf" respond "$to_jp" --final \
  --text "Logs of 203.0.113.7 for 2026-11-18..21 preserved under reference JP-2026-0412"
comity --connect "$dir/DE/bob.conf" respond "$to_de" --final \
  --text "Logs of 198.51.100.23 preserved for 90 days under reference DE-2026-7731"
wait_case FR "$to_jp" CASE_EXECUTED
wait_case FR "$to_de" CASE_EXECUTED

echo
echo "== FR: both requests sent, both executed, every step signed and verified"
comity --connect "$dir/FR/alice.conf" list --sent
for id in "$to_jp" "$to_de"; do
  echo
  comity --connect "$dir/FR/alice.conf" show "$id" | grep -E '^(request|case|receipt|  [0-9]+\.)'
done

echo
echo "== All three audit logs verify (auditor carol)"
for p in FR JP DE; do
  echo -n "$p: "
  comity --connect "$dir/$p/carol.conf" audit verify
done

if [ "$keep" = 1 ]; then
  echo
  echo "nodes keep running; try: $bin/comity --connect $dir/FR/alice.conf list"
  echo "stop them with: kill \$(cat $dir/*/comityd.pid)"
fi
