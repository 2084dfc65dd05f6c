#!/usr/bin/env bash
# Starts a local Comity network on loopback and exchanges a real request.
#
#   deploy/local-network.sh [--dir DIR] [--parties FR,JP] [--base-port 7400]
#                           [--bin BUILD_DIR] [--keep] [--memory-limit-mb N]
#
# Makes fresh keys and certificates (certs/make-network.sh), writes one node
# configuration per party (with a Prometheus metrics port, docs/metrics.md)
# and a client configuration per operator (alice, bob, carol and admin, who
# holds the admin role), starts a comityd per party, then has FR's operator
# submit a preservation request to JP and shows its case on both sides
# (CASE_DELIVERED, JP's signed receipt verified), JP's acceptance reaching FR
# (CASE_ACCEPTED), each party's audit log verified by its own auditor, FR's
# metrics and an online backup by FR's admin.
# Without --keep the nodes are stopped at the end; with it they keep running
# (stop them with: kill $(cat DIR/*/comityd.pid)).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${TMPDIR:-/tmp}/comity-network
parties=FR,JP
base_port=7400
bin=$root/build/bin
keep=0
memory_limit_mb=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --parties) parties=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --memory-limit-mb) memory_limit_mb=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a P <<< "$parties"
[ ${#P[@]} -ge 2 ] || { echo "$0: --parties needs at least two parties" >&2; exit 2; }
for b in comityd comity; do
  [ -x "$bin/$b" ] || { echo "$0: $bin/$b not found; build first (cmake -S . -B build && cmake --build build -j2) or pass --bin DIR" >&2; exit 1; }
done

rm -rf "$dir"
mkdir -p "$dir"
"$root/certs/make-network.sh" "$dir" "${P[@]}" --operators alice:submitter+reviewer,bob:reviewer+approver,carol:auditor,admin:admin >/dev/null

peer_port() { echo $((base_port + 10 * $1)); }
op_port() { echo $((base_port + 10 * $1 + 1)); }
metrics_port() { echo $((base_port + 10 * $1 + 2)); }

for i in "${!P[@]}"; do
  p=${P[$i]}
  conf=$dir/$p/node.conf
  {
    echo "# Node configuration of party $p (comity.v1.NodeConfig, protobuf text format)."
    echo "party: \"$p\""
    echo "peer_listen_address: \"127.0.0.1:$(peer_port "$i")\""
    echo "operator_listen_address: \"127.0.0.1:$(op_port "$i")\""
    echo "data_dir: \"data\""
    echo "# Prometheus metrics, plain HTTP on loopback (docs/metrics.md)."
    echo "metrics_listen_address: \"127.0.0.1:$(metrics_port "$i")\""
    echo "treaties_dir: \"$root/deploy/treaties\""
    echo "# Extradition and interception requests leave only with a second operator's approval."
    echo "approval { assistance_types: [EXTRADITION, INTERCEPTION] }"
    echo "tls { cert_file: \"node.pem\" key_file: \"node.key\" operator_ca_file: \"ca.pem\" }"
    echo "signing_key { key_id: \"$p-1\" private_key_file: \"signing.key\" }"
    for j in "${!P[@]}"; do
      [ "$i" = "$j" ] && continue
      q=${P[$j]}
      echo "peers {"
      echo "  party: \"$q\""
      echo "  address: \"127.0.0.1:$(peer_port "$j")\""
      echo "  ca_file: \"../$q/ca.pem\""
      echo "  signing_keys { key_id: \"$q-1\" ed25519_public_key: \"$(cat "$dir/$q/signing.pub")\" }"
      echo "}"
    done
  } > "$conf"
  for op in alice bob carol admin; do
    cat > "$dir/$p/$op.conf" <<CONF
# How operator $op of $p reaches the node (comity.v1.ClientConfig).
address: "127.0.0.1:$(op_port "$i")"
ca_file: "ca.pem"
cert_file: "operators/$op.pem"
key_file: "operators/$op.key"
CONF
  done
done

pids=()
stop_nodes() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
if [ "$keep" = 0 ]; then trap stop_nodes EXIT; fi

for i in "${!P[@]}"; do
  p=${P[$i]}
  if [ "$memory_limit_mb" -gt 0 ]; then
    # Each node in its own address-space limit (ulimit -v), e.g. to show that
    # evidence larger than it streams through.
    (ulimit -v $((memory_limit_mb * 1024)); exec "$bin/comityd" --config "$dir/$p/node.conf") \
      2> "$dir/$p/comityd.log" &
  else
    "$bin/comityd" --config "$dir/$p/node.conf" 2> "$dir/$p/comityd.log" &
  fi
  pids+=($!)
  echo $! > "$dir/$p/comityd.pid"
done

# Wait until every node answers its operators.
for i in "${!P[@]}"; do
  p=${P[$i]}
  up=0
  for _ in $(seq 1 100); do
    if "$bin/comity" --connect "$dir/$p/alice.conf" list --limit 1 >/dev/null 2>&1; then up=1; break; fi
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "$0: comityd for $p exited; its log:" >&2; cat "$dir/$p/comityd.log" >&2; exit 1
    fi
    sleep 0.1
  done
  if [ "$up" = 0 ]; then
    echo "$0: comityd for $p does not answer; last error:" >&2
    "$bin/comity" --connect "$dir/$p/alice.conf" list --limit 1 >&2 || true
    exit 1
  fi
done
echo "== ${#P[@]} nodes up: ${P[*]} (configs and keys in $dir)"
for i in "${!P[@]}"; do
  echo "   ${P[$i]}: operators on 127.0.0.1:$(op_port "$i"), metrics on http://127.0.0.1:$(metrics_port "$i")/metrics"
done

from=${P[0]} to=${P[1]}
echo
echo "== The treaty question first, offline: is $to obliged to preserve data for $from?"
"$bin/comity" treaty check --treaties "$root/deploy/treaties" --from "$from" --to "$to" \
  --type PRESERVATION --offence DATA_INTERFERENCE | sed -n '1,4p'

echo
echo "== $from (operator alice) submits a preservation request to $to; 'delivery:' is its delivery state"
echo "   (DELIVERED: $to stored it and its signed receipt is back)"
out=$("$bin/comity" --connect "$dir/$from/alice.conf" submit --to "$to" \
  --type PRESERVATION --offence DATA_INTERFERENCE --penalty-months 60 --urgency URGENT \
  --authority "Parquet de Paris, section J3 (cybercriminalite)" \
  --facts "Ransomware deployed on a hospital network on 2026-11-20; C2 traffic to a hosting provider in $to" \
  --data-sought "Subscriber and connection logs of the server at 203.0.113.7, 2026-11-18..2026-11-21" \
  --relation "The server relayed the ransomware's command-and-control traffic" \
  --custodian "Example Hosting KK, data centre in $to" \
  --necessity "Logs are rotated after 14 days" \
  --intent-mla --confidential --tlp AMBER --use-limit "criminal proceedings only")
echo "$out"
id=$(echo "$out" | sed -n 's/^submitted \([0-9a-f-]*\):.*/\1/p')
[ -n "$id" ] || { echo "$0: submit did not print a request id" >&2; exit 1; }
# Delivery is asynchronous: if the first attempt failed (a peer still
# starting), the outbox retries with backoff. Wait for the receipt.
for _ in $(seq 1 200); do
  "$bin/comity" --connect "$dir/$to/alice.conf" show "$id" >/dev/null 2>&1 && break
  sleep 0.1
done

echo
echo "== $from: its sent requests, each with its case state (CASE_DELIVERED: $to holds it, no step yet)"
"$bin/comity" --connect "$dir/$from/alice.conf" list --sent
echo
echo "== $to: its received requests, the same case in the same state"
"$bin/comity" --connect "$dir/$to/alice.conf" list --received
echo
echo "== $to: the request, its signature and receipt verified"
echo "   (its first line gives direction, delivery state and case state)"
"$bin/comity" --connect "$dir/$to/alice.conf" show "$id"
echo
echo "== $from: the same request as $from holds it, $to's receipt verified"
"$bin/comity" --connect "$dir/$from/alice.conf" show "$id" | grep -E '^(request|signature|receipt|assessment|DISAGREEMENT)'

echo
echo "== $to (operator bob, reviewer) accepts: CASE_DELIVERED -> CASE_ACCEPTED, a signed step that reaches $from"
"$bin/comity" --connect "$dir/$to/bob.conf" accept "$id"
for _ in $(seq 1 50); do
  "$bin/comity" --connect "$dir/$from/alice.conf" show "$id" | grep -q '^case: *CASE_ACCEPTED' && break
  sleep 0.1
done
"$bin/comity" --connect "$dir/$from/alice.conf" show "$id" | grep -E '^(case|  [0-9]+\.)'

echo
echo "== $from's audit log, verified by $from's auditor (carol of $from)"
echo -n "$from: "
"$bin/comity" --connect "$dir/$from/carol.conf" audit verify
echo "== $to's audit log, verified by $to's auditor (carol of $to); its REQUEST_RECEIVED entry proves $to holds the request"
echo -n "$to: "
"$bin/comity" --connect "$dir/$to/carol.conf" audit verify
"$bin/comity" --connect "$dir/$to/carol.conf" audit log --request "$id"

echo
echo "== $from's metrics (http://127.0.0.1:$(metrics_port 0)/metrics): its requests by delivery state"
# A plain HTTP GET without curl (bash's /dev/tcp).
exec 3<>"/dev/tcp/127.0.0.1/$(metrics_port 0)"
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
grep -E '^comity_(requests|outbox_requests)\{' <&3 | grep -v ' 0$' || true
exec 3<&-

echo
echo "== $from's admin (operator admin, admin role) takes an online backup"
"$bin/comity" --connect "$dir/$from/admin.conf" admin backup --out "$dir/$from/backup/comity.db"

if [ "$keep" = 1 ]; then
  echo
  echo "nodes keep running; try: $bin/comity --connect $dir/$from/alice.conf list"
  echo "stop them with: kill \$(cat $dir/*/comityd.pid)"
fi
