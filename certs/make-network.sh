#!/usr/bin/env bash
# Makes the keys and certificates of a test network of Comity parties.
#
#   certs/make-network.sh OUT_DIR FR JP [DE ...] [--operators NAME[:ROLE+ROLE],...]
#
# For each party XX it writes into OUT_DIR/XX/:
#   ca.pem, ca.key            the party's own CA (issues its node and operator certs)
#   node.pem, node.key        TLS certificate of the node: URI SAN urn:comity:party:XX,
#                             DNS localhost, IP 127.0.0.1 and ::1
#   signing.key               Ed25519 signing key (PKCS#8 PEM)
#   signing.pub               its 32-byte raw public key, base64, for peers' configs
#   operators/NAME.pem, .key  operator client certificates: urn:comity:operator:XX:NAME,
#                             plus urn:comity:role:ROLE for each role given as NAME:ROLE+ROLE
#                             (default: alice:submitter+reviewer,bob:reviewer+approver,
#                             carol:auditor; roles: submitter reviewer approver auditor admin)
# Private keys are created with mode 0600 inside directories of mode 0700.
# These are test credentials: never reuse them in production, never commit them.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR PARTY [PARTY ...] [--operators NAME[,NAME...]] [--days N]" >&2; exit 2; }

[ $# -ge 2 ] || usage
out=$1; shift
parties=()
operators=alice:submitter+reviewer,bob:reviewer+approver,carol:auditor
days=365
while [ $# -gt 0 ]; do
  case "$1" in
    --operators) [ $# -ge 2 ] || usage; operators=$2; shift 2 ;;
    --days) [ $# -ge 2 ] || usage; days=$2; shift 2 ;;
    -*) echo "$0: unknown option $1" >&2; usage ;;
    *)
      if ! [[ "$1" =~ ^[A-Z]{2}$ ]]; then
        echo "$0: party '$1' is not a two-letter upper-case ISO 3166-1 code (e.g. FR)" >&2; exit 2
      fi
      parties+=("$1"); shift ;;
  esac
done
[ ${#parties[@]} -ge 1 ] || usage
command -v openssl >/dev/null || { echo "$0: openssl is required (apt-get install openssl)" >&2; exit 1; }

umask 077
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# new_key FILE: an ECDSA P-256 key for TLS, mode 0600.
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# issue CA_DIR NAME SUBJECT SAN OUT_BASE EKU: a leaf certificate signed by the party CA.
issue() {
  local ca_dir=$1 subject=$2 san=$3 base=$4 eku=$5
  new_key "$base.key"
  openssl req -new -key "$base.key" -subj "$subject" -out "$tmp/leaf.csr" 2>/dev/null
  cat > "$tmp/leaf.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = $eku
subjectAltName = $san
EXT
  openssl x509 -req -in "$tmp/leaf.csr" -CA "$ca_dir/ca.pem" -CAkey "$ca_dir/ca.key" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -days "$days" -sha256 \
    -extfile "$tmp/leaf.ext" -out "$base.pem" 2>/dev/null
  chmod 644 "$base.pem"
}

for p in "${parties[@]}"; do
  dir="$out/$p"
  mkdir -p "$dir/operators"
  chmod 700 "$dir" "$dir/operators"
  new_key "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
    -subj "/O=Comity test network/CN=Comity test CA $p" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem" 2>/dev/null
  chmod 644 "$dir/ca.pem"
  issue "$dir" "/O=Comity test network/CN=comity node $p" \
    "URI:urn:comity:party:$p, DNS:localhost, IP:127.0.0.1, IP:::1" \
    "$dir/node" "serverAuth, clientAuth"
  openssl genpkey -algorithm ed25519 -out "$dir/signing.key" 2>/dev/null
  chmod 600 "$dir/signing.key"
  openssl pkey -in "$dir/signing.key" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 > "$dir/signing.pub"
  chmod 644 "$dir/signing.pub"
  IFS=, read -r -a names <<< "$operators"
  for spec in "${names[@]}"; do
    name=${spec%%:*}
    roles=""
    [ "$spec" != "$name" ] && roles=${spec#*:}
    if ! [[ "$name" =~ ^[a-z][a-z0-9_.-]*$ ]]; then
      echo "$0: operator name '$name' must be lower case letters, digits, . _ -" >&2; exit 2
    fi
    san="URI:urn:comity:operator:$p:$name"
    IFS=+ read -r -a role_list <<< "$roles"
    for role in "${role_list[@]}"; do
      [[ "$role" =~ ^[a-z]+$ ]] || { echo "$0: role '$role' must be lower case letters" >&2; exit 2; }
      san="$san, URI:urn:comity:role:$role"
    done
    issue "$dir" "/O=Comity test network/CN=$name ($p)" "$san" "$dir/operators/$name" "clientAuth"
  done
  echo "made $dir: CA, node certificate, signing key, operators: $operators"
done
