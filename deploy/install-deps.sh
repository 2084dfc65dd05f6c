#!/usr/bin/env bash
# Installs the Debian 12 packages Comity builds, tests and runs with.
# Idempotent: does nothing when they are all present.
set -euo pipefail
packages=(build-essential cmake pkg-config ccache openssl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libssl-dev libsqlite3-dev sqlite3 libgtest-dev libgmock-dev libbenchmark-dev bc
  libpq-dev postgresql
  libgoogle-perftools-dev  # tcmalloc-minimal, comityd's allocator (COMITY_TCMALLOC)
  prometheus-cpp-dev  # the /metrics endpoint (docs/metrics.md)
  clang libclang-rt-14-dev  # clang and the libFuzzer runtime: tests/fuzz.sh
  systemd python3-yaml  # systemd-analyze, YAML parsing: tests/deploy (checks of deploy/)
  chromium chromium-driver  # headless browser: tests/e2e/audit_page_test (comity audit serve)
  faketime)  # libfaketime, a wrong wall clock for a child process: tests/e2e/crash_test.py (D)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "$0: run as root or install sudo; missing: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "installing: ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
