#!/usr/bin/env bash
# Runs manifests_test.py (deploy/docker-compose.yml, deploy/docker/,
# deploy/k8s/). Exit 77 (skipped) only when python3 or its yaml module is
# missing (deploy/install-deps.sh installs python3-yaml).
set -euo pipefail
root=$1 bin=$2
py=""
for c in python3 /usr/bin/python3; do
  if command -v "$c" >/dev/null && "$c" -c 'import yaml' 2>/dev/null; then py=$c; break; fi
done
[ -n "$py" ] || { echo "SKIP: python3 with the yaml module not found (apt-get install python3-yaml; deploy/install-deps.sh does)"; exit 77; }
exec "$py" "$root/tests/deploy/manifests_test.py" "$root" "$bin"
