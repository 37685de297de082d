#!/usr/bin/env bash
# Benchmark (not a test): `odoo-db health --format nagios` versus
# `check_postgres --action=hot_standby_delay` on the same sandbox primary/standby, same role
# (odoo_db_admin) and pgpass, alternating in one run. Wall time from the shell's clock
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

# The standby replays init's CREATE DATABASE a moment later; then warm the page cache
# and check that both work before timing them.
for _ in $(seq 1 100); do odoo_db >/dev/null && break; sleep 0.1; done
odoo_db >/dev/null || { echo "odoo-db health failed:"; odoo_db; exit 1; }
check_pg >/dev/null || { echo "check_postgres failed:"; check_pg; exit 1; }

: > "$WORK/odoo_db"; : > "$WORK/odoo_db_all"; : > "$WORK/check_pg"
for _ in $(seq 1 "$RUNS"); do
  measure "${CHECK_PG[@]}" >> "$WORK/check_pg"
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
ratio=$(echo "scale=3; $(median "$WORK/odoo_db" 1) / $(median "$WORK/check_pg" 1)" | bc)
printf '\nodoo-db / check_postgres wall time = %s (target: at most 0.15); odoo-db peak RSS target: under 10 MB\n' "$ratio"
printf 'check_postgres said: %s\n' "$(check_pg | head -1)"
printf 'odoo-db said: %s\n' "$(odoo_db | head -1)"
