#!/usr/bin/env bash
# Benchmark (not a test): `odoo-db health --format nagios` (every check: lag, topology,
# wraparound, xmin horizon, archiving, connections, WAL, settings) versus
# `check_postgres --action=hot_standby_delay` alone, and versus the same coverage from the
# peers (check_pgactivity's archiver, max_freeze_age, oldest_xmin and replication_slots,
# plus check_postgres hot_standby_delay, run one after the other as a Nagios host would),
# on the same sandbox primary/standby, same role (odoo_db_admin) and pgpass, alternating
# in one run. Wall time from the shell's clock
# (nanoseconds), peak RSS from /usr/bin/time -v (for check_postgres, the largest of perl
# and the psql processes it starts). Prints a markdown table of medians.
#   bench/health.sh [RUNS]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
scripts/install-deps >/dev/null
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/odoo-db
CHECK_POSTGRES=$(command -v check_postgres || command -v check_postgres.pl || true)
[ -n "$CHECK_POSTGRES" ] || { echo "bench/health.sh: check_postgres is missing (Debian: check-postgres)" >&2; exit 1; }
CHECK_PGACTIVITY=$(command -v check_pgactivity || echo /usr/lib/nagios/plugins/check_pgactivity)
[ -x "$CHECK_PGACTIVITY" ] || { echo "bench/health.sh: check_pgactivity is missing (Debian: check-pgactivity)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/health.sh: /usr/bin/time is missing (Debian: time)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/odoo-db-bench.XXXXXX)
chmod 755 "$WORK"
trap '"$BIN" sandbox down --dir "$WORK/sandbox" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

"$BIN" sandbox up --dir "$WORK/sandbox" > "$WORK/exports"
# shellcheck disable=SC1090
source "$WORK/exports"
"$BIN" init >/dev/null
PRIMARY_PORT=$(grep -o 'primary = "postgresql://[^"]*' "$ODOO_DB_CONFIG" | head -1 | grep -o '127.0.0.1:[0-9]*' | cut -d: -f2)
STANDBY_PORT=$((PRIMARY_PORT + 1))
export PGSSLMODE=disable

# One timed run: prints "<wall ms> <peak RSS kB> <exit code>".
measure() {
  local start end code
  start=$(date +%s%N)
  code=0
  /usr/bin/time -v -o "$WORK/time" "$@" > "$WORK/out" 2>&1 || code=$?
  end=$(date +%s%N)
  echo "$(( (end - start) / 1000 )) $(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time") $code"
}

ODOO_DB=("$BIN" -q health --format nagios --cluster production)
ODOO_DB_ALL=("$BIN" -q health --format nagios)
CHECK_PG=("$CHECK_POSTGRES" --action=hot_standby_delay
  --dbhost=127.0.0.1,127.0.0.1 --dbport="$PRIMARY_PORT,$STANDBY_PORT"
  --dbuser=odoo_db_admin --dbname=postgres
  --warning='16777216 and 30s' --critical='268435456 and 300s')
odoo_db() { "${ODOO_DB[@]}"; }
check_pg() { "${CHECK_PG[@]}"; }
# The peers' coverage of what odoo-db health checks beyond lag, one plugin run per
# service as Nagios schedules them; the exit code is the worst.
PGACTIVITY=("$CHECK_PGACTIVITY" -h 127.0.0.1 -p "$PRIMARY_PORT" -U odoo_db_admin -d postgres
  --status-file "$WORK/check_pgactivity.data")
peers() {
  local worst=0 code
  for service in "archiver" "max_freeze_age -w 50% -c 75%" "oldest_xmin -w 1000000 -c 10000000" \
    "replication_slots -w wal=50 -c wal=100"; do
    code=0
    # shellcheck disable=SC2086
    "${PGACTIVITY[@]}" -s $service > /dev/null 2>&1 || code=$?
    [ "$code" -gt "$worst" ] && worst=$code
  done
  code=0
  check_pg > /dev/null 2>&1 || code=$?
  [ "$code" -gt "$worst" ] && worst=$code
  return "$worst"
}

# The standby replays init's CREATE DATABASE a moment later; then warm the page cache
# and check that both work before timing them.
for _ in $(seq 1 100); do odoo_db >/dev/null && break; sleep 0.1; done
odoo_db >/dev/null || { echo "odoo-db health failed:"; odoo_db; exit 1; }
check_pg >/dev/null || { echo "check_postgres failed:"; check_pg; exit 1; }

: > "$WORK/odoo_db"; : > "$WORK/odoo_db_all"; : > "$WORK/check_pg"; : > "$WORK/peers"
for _ in $(seq 1 "$RUNS"); do
  measure "${CHECK_PG[@]}" >> "$WORK/check_pg"
  measure bash -c "$(declare -p PGACTIVITY CHECK_PG); $(declare -f peers check_pg); peers" >> "$WORK/peers"
  measure "${ODOO_DB[@]}" >> "$WORK/odoo_db"
  measure "${ODOO_DB_ALL[@]}" >> "$WORK/odoo_db_all"
done

median() { # file column
  sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}
row() { # label file
  printf '| %s | %.1f | %.1f |\n' "$1" "$(echo "$(median "$2" 1) / 1000" | bc -l)" "$(echo "$(median "$2" 2) / 1024" | bc -l)"
}
printf '| %s runs each, alternating | wall (ms, median) | peak RSS (MB, median) |\n|---|---|---|\n' "$RUNS"
row 'check_postgres --action=hot_standby_delay (primary + standby)' "$WORK/check_pg"
row 'odoo-db health --format nagios --cluster production (primary + standby)' "$WORK/odoo_db"
row 'odoo-db health --format nagios (all clusters: + integration)' "$WORK/odoo_db_all"
printf '(exit codes: odoo-db %s; the peers %s)\n' "$(cut -d' ' -f3 "$WORK/odoo_db" | sort -u | tr '\n' ' ')" "$(cut -d' ' -f3 "$WORK/peers" | sort -u | tr '\n' ' ')" > "$WORK/codes"
row 'check_pgactivity archiver, max_freeze_age, oldest_xmin, replication_slots + check_postgres hot_standby_delay (same coverage)' "$WORK/peers"
ratio=$(echo "scale=3; $(median "$WORK/odoo_db" 1) / $(median "$WORK/check_pg" 1)" | bc)
printf '\nodoo-db / check_postgres wall time = %s (target: at most 0.1); odoo-db peak RSS target: at most 8 MB\n' "$ratio"
ratio=$(echo "scale=3; $(median "$WORK/odoo_db" 1) / $(median "$WORK/peers" 1)" | bc)
printf 'odoo-db / the peers for the same coverage, wall time = %s\n' "$ratio"
cat "$WORK/codes"
printf 'load average during the run: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'check_postgres said: %s\n' "$(check_pg | head -1)"
for service in archiver max_freeze_age oldest_xmin replication_slots; do
  printf 'check_pgactivity -s %s said: %s\n' "$service" "$("${PGACTIVITY[@]}" -s "$service" 2>&1 | head -1)"
done
printf 'odoo-db said: %s\n' "$(odoo_db | head -1)"
