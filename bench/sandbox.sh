#!/usr/bin/env bash
# Benchmark (not a test): how long the harness takes to start the trio (primary,
# streaming standby via pg_basebackup -R, integration server) — `odoo-db sandbox up` —
# versus a plain shell script doing the same with the same settings, in one run.
#   bench/sandbox.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
scripts/install-deps >/dev/null
cargo build --release --quiet
BIN=$PWD/target/release/odoo-db
BINDIR=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
now() { date +%s.%N; }

shell_trio() { # dir port
  local dir=$1 port=$2
  mkdir -p "$dir" && chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  local conf="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off -c full_page_writes=off -c wal_level=replica"
  as_pg "$BINDIR/initdb" -D "$dir/p" -U postgres -A trust -E UTF8 --no-sync >/dev/null &
  as_pg "$BINDIR/initdb" -D "$dir/i" -U postgres -A trust -E UTF8 --no-sync >/dev/null &
  wait
  as_pg "$BINDIR/pg_ctl" -D "$dir/p" -l "$dir/p.log" -o "-p $port $conf" -w start >/dev/null
  as_pg "$BINDIR/pg_ctl" -D "$dir/i" -l "$dir/i.log" -o "-p $((port + 2)) $conf" -w start >/dev/null &
  as_pg "$BINDIR/pg_basebackup" -h "$dir" -p "$port" -U postgres -D "$dir/s" -R -X stream -C -S bench_standby
  as_pg "$BINDIR/pg_ctl" -D "$dir/s" -l "$dir/s.log" -o "-p $((port + 1)) $conf -c hot_standby=on" -w start >/dev/null
  wait
}
shell_down() {
  local dir=$1
  for d in s p i; do as_pg "$BINDIR/pg_ctl" -D "$dir/$d" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}

odoo_total=0; shell_total=0
for round in $(seq 1 "$ROUNDS"); do
  dir=$(mktemp -d /tmp/odoo-db-bench-sb.XXXXXX); rmdir "$dir"
  start=$(now); "$BIN" sandbox up --dir "$dir" >/dev/null; t=$(echo "$(now) - $start" | bc)
  odoo_total=$(echo "$odoo_total + $t" | bc)
  "$BIN" sandbox down --dir "$dir" >/dev/null
  dir=$(mktemp -d /tmp/odoo-db-bench-sh.XXXXXX)
  start=$(now); shell_trio "$dir" 55420; t=$(echo "$(now) - $start" | bc)
  shell_total=$(echo "$shell_total + $t" | bc)
  shell_down "$dir"
done
printf '| start primary + streaming standby + integration (mean of %s) | seconds |\n|---|---|\n' "$ROUNDS"
printf '| shell script (initdb, pg_ctl, pg_basebackup -R) | %.2f |\n' "$(echo "$shell_total / $ROUNDS" | bc -l)"
printf '| odoo-db sandbox up (roles, pgpass, config, waits for streaming) | %.2f |\n' "$(echo "$odoo_total / $ROUNDS" | bc -l)"
