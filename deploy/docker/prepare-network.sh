#!/usr/bin/env bash
# Makes what deploy/docker-compose.yml mounts: keys and certificates of FR,
# JP and DE (certs/make-network.sh), node configurations, probe and operator
# client configurations, and an env file for compose.
#
#   deploy/docker/prepare-network.sh DIR
#   docker compose --env-file DIR/compose.env -f deploy/docker-compose.yml up -d --build
#   build/bin/comity --connect DIR/FR/alice.conf list        # from the host
#
# For each party XX, DIR/XX/ then holds, besides make-network.sh's files:
#   node.pem          re-issued by XX's CA with DNS:xx added, the compose
#                     service name peers dial (gRPC checks the host name)
#   node.conf         deploy/docker/config/XX.conf with the peers' real keys
#   probe.conf        the container's healthcheck client (`comity health`,
#                     operator certificate "probe", no role)
#   alice.conf, ...   operators' client configurations for use on the host
# Run as root (or with sudo) so the files the containers read belong to the
# image's user, uid 10001: comityd refuses private keys others may read, so
# the keys stay 0600 and must be owned by the reader.
# These are test credentials: never use them in production.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
parties=(FR JP DE)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
"$root/certs/make-network.sh" "$dir" "${parties[@]}" \
  --operators alice:submitter+reviewer,bob:reviewer+approver,carol:auditor,probe >/dev/null

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
host_port=7401
for p in "${parties[@]}"; do
  lp=$(tr 'A-Z' 'a-z' <<< "$p")
  d=$dir/$p
  # Node certificate again, same key, with the service name as a DNS SAN.
  cat > "$tmp/node.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = URI:urn:comity:party:$p, DNS:$lp, DNS:localhost, IP:127.0.0.1, IP:::1
EXT
  openssl req -new -key "$d/node.key" -subj "/O=Comity test network/CN=comity node $p" \
    -out "$tmp/node.csr" 2>/dev/null
  openssl x509 -req -in "$tmp/node.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -CAserial "$tmp/ca.srl" -days 365 -sha256 -extfile "$tmp/node.ext" -out "$d/node.pem" 2>/dev/null
  chmod 644 "$d/node.pem"

  conf=$(cat "$root/deploy/docker/config/$p.conf")
  for q in "${parties[@]}"; do
    [ "$q" = "$p" ] && continue
    pub=$(cat "$dir/$q/signing.pub")
    conf=$(sed -E "/# from $q\/signing.pub\$/s#ed25519_public_key: \"[^\"]*\"#ed25519_public_key: \"$pub\"#" <<< "$conf")
    grep -qF "\"$pub\"  # from $q/signing.pub" <<< "$conf" || {
      echo "$0: config/$p.conf has no line marked '# from $q/signing.pub'" >&2; exit 1; }
  done
  printf '%s\n' "$conf" > "$d/node.conf"
  chmod 644 "$d/node.conf"

  cat > "$d/probe.conf" <<CONF
# The container healthcheck's client (comity --connect ... health): an
# operator certificate without roles, enough for grpc.health.v1 only.
address: "127.0.0.1:7401"
ca_file: "/etc/comity/operator-ca.pem"  # this test network's one CA per party
cert_file: "/etc/comity/probe/probe.pem"
key_file: "/etc/comity/probe/probe.key"
CONF
  chmod 644 "$d/probe.conf"
  for op in alice bob carol; do
    cat > "$d/$op.conf" <<CONF
# Operator $op of $p, from the host: the compose file publishes $p's
# operator listener on 127.0.0.1:$host_port.
address: "127.0.0.1:$host_port"
ca_file: "ca.pem"
cert_file: "operators/$op.pem"
key_file: "operators/$op.key"
CONF
  done
  host_port=$((host_port + 10))
done

if [ ! -f "$dir/compose.env" ]; then
  cat > "$dir/compose.env" <<ENV
COMITY_NETWORK_DIR=$dir
COMITY_PG_PASSWORD=$(openssl rand -hex 16)
ENV
fi
chmod 600 "$dir/compose.env"

if [ "$(id -u)" = 0 ]; then
  # What the containers read: their own keys and configs, the peers' CAs.
  for p in "${parties[@]}"; do
    chown 10001:10001 "$dir/$p/node.key" "$dir/$p/signing.key" "$dir/$p/operators/probe.key"
  done
else
  echo "note: not root: before 'docker compose up', run" >&2
  for p in "${parties[@]}"; do
    echo "  sudo chown 10001:10001 $dir/$p/node.key $dir/$p/signing.key $dir/$p/operators/probe.key" >&2
  done
fi
echo "network for docker compose in $dir:"
echo "  docker compose --env-file $dir/compose.env -f $root/deploy/docker-compose.yml up -d --build"
