#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: its own cluster in DIR,
# listening only on a Unix socket in DIR (no TCP port, so it cannot clash
# with another server or another run), with a role "comity" that may
# CREATE DATABASE. Prints the libpq URL to export as COMITY_TEST_POSTGRES.
#
#   url=$(tests/store/postgres_server.sh start "$(mktemp -d)")
#   COMITY_TEST_POSTGRES=$url ctest -R store
#   tests/store/postgres_server.sh stop DIR
#
# As root (CI), the server runs as the "postgres" user that Debian's
# postgresql package creates (initdb refuses to run as root); otherwise as
# the calling user. Uses the newest /usr/lib/postgresql/*/bin (Debian's
# layout), else initdb/pg_ctl from PATH.
set -euo pipefail
usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$2

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ]; then
  command -v pg_ctl >/dev/null || { echo "$0: PostgreSQL not installed (deploy/install-deps.sh)" >&2; exit 1; }
  bindir=$(dirname "$(command -v pg_ctl)")
fi
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    mkdir -p "$dir"
    chmod 0755 "$dir"
    mkdir -p "$dir/data" "$dir/sock"
    chmod 0700 "$dir/data"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/data" "$dir/sock"
    # Trust on the private socket only: the directory is the access control.
    # fsync off: a test server's durability is not under test (the store's
    # commits still wait for the server's acknowledgement).
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/sock/server.log" -w -t 60 \
      -o "-c listen_addresses='' -k $dir/sock -p 5432 -c fsync=off -c max_connections=200" \
      start >/dev/null || { cat "$dir/sock/server.log" >&2; exit 1; }
    as_owner psql -q -h "$dir/sock" -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 \
      -c "CREATE ROLE comity LOGIN CREATEDB" >/dev/null
    echo "postgresql:///postgres?host=$dir/sock&port=5432&user=comity"
    ;;
  stop)
    [ -d "$dir/data" ] && as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *) usage ;;
esac
