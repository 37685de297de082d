#!/usr/bin/env bash
# Benchmark (not a test): `odoo-db refresh` of a ~SIZE_MB Odoo-shaped production database
# into its integration twin, versus the manual sequence it replaces, side by side in one
# run on a throwaway sandbox (primary + streaming standby + integration):
#
#   manual:   pg_dump -Fc from the primary + dropdb + createdb + pg_restore (each with
#             its defaults; pg_restore's errors about production's roles are ignored, as a
#             DBA would), no neutralization, no backup of the integration database
#   odoo-db:  odoo-db refresh NAME_integration --yes --jobs JOBS: backup of the integration
#             database (which holds the manual run's copy, ~SIZE_MB), dump from the standby
#             (directory format, parallel), restore (parallel), neutralization, window
#
# Target (issue 12): odoo-db <= 0.5 x the manual sequence. Everything runs as odoo-db's
# least-privilege role over TCP, like odoo-db itself.
#
# usage: [ODOO_DB_BIN=PATH] bench/refresh.sh [SIZE_MB (default 500)] [JOBS (default 2)]
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${1:-500}
JOBS=${2:-2}
# ODOO_DB_BIN: a binary built beforehand (the tree may change while this runs).
if [ -z "${ODOO_DB_BIN:-}" ]; then
    cargo build --release --quiet
fi
BIN=${ODOO_DB_BIN:-$PWD/target/release/odoo-db}

# shellcheck source=bench/lib.sh
source bench/lib.sh
sandbox_start 56000
export ODOO_DB_CONFIG=$SANDBOX/odoo-db.toml PGPASSFILE=$SANDBOX/pgpass
printf '\n[refresh]\nspool_dir = "%s"\n' "$WORK/spool" >>"$ODOO_DB_CONFIG"
"$BIN" -q init >/dev/null
mkdir -m 700 "$WORK/secrets"
"$BIN" -q provision --customer bench-co --secrets-dir "$WORK/secrets" >"$WORK/names.env"
PROD=$(sed -n 's/^export DB_NAME=//p' "$WORK/names.env" | head -n 1)
NAME=${PROD}_integration
PRIMARY_PORT=$BASE
INTEGRATION_PORT=$((BASE + 2))
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PGBIN=${PG_BINDIR:-${PGBIN:-$(pg_config --bindir)}}

su_psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SANDBOX/sock" -U postgres "$@"; }
PRIMARY=(-h 127.0.0.1 -p "$PRIMARY_PORT" -U odoo_db_admin)
INTEGRATION=(-h 127.0.0.1 -p "$INTEGRATION_PORT" -U odoo_db_admin)

ROWS=$((SIZE_MB * 3200))
echo "# generating ~${SIZE_MB} MB ($ROWS partner-like rows) in $PROD, Odoo-shaped" >&2
{
    echo "SET ROLE \"$PROD\";"
    sed 's/{major}/16/g' tests/fixtures/odoo.sql
    cat <<SQL
INSERT INTO res_partner (name, email)
SELECT 'Partner ' || g || ' ' || repeat(substr(md5((g % 1000)::text), 1, 16) || ' lorem ipsum dolor sit amet ', 4),
       md5(g::text) || '@example.com'
  FROM generate_series(1, $ROWS) AS g;
SQL
} | su_psql -p "$PRIMARY_PORT" -d "$PROD"
su_psql -p "$PRIMARY_PORT" -d "$PROD" -c "VACUUM ANALYZE" -c "CHECKPOINT"
SIZE=$(su_psql -p "$PRIMARY_PORT" -d postgres -At -c "SELECT pg_size_pretty(pg_database_size('$PROD'))")
sleep 5 # the standby catches up

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

manual() {
    rm -f "$WORK/manual.dump"
    "$PGBIN/pg_dump" "${PRIMARY[@]}" -Fc -f "$WORK/manual.dump" "$PROD"
    "$PGBIN/dropdb" "${INTEGRATION[@]}" --force "$NAME"
    "$PGBIN/createdb" "${INTEGRATION[@]}" -O "$NAME" "$NAME"
    "$PGBIN/pg_restore" "${INTEGRATION[@]}" -d "$NAME" "$WORK/manual.dump" 2>"$WORK/manual.errors" || true
}
odoo() { "$BIN" -q refresh "$NAME" --yes --jobs "$JOBS" --backup-dir "$WORK/backups" >/dev/null; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(now); manual; end=$(now); MANUAL=$(elapsed "$start" "$end")
echo "# manual $MANUAL s ($(grep -c 'error:' "$WORK/manual.errors" || true) pg_restore errors ignored)" >&2
# The integration database odoo-db backs up: the same copy, owned as a refresh leaves it
# (the manual restore left production's objects owned by odoo-db's role), untimed.
"$PGBIN/dropdb" "${INTEGRATION[@]}" --force "$NAME"
"$PGBIN/createdb" "${INTEGRATION[@]}" -O "$NAME" "$NAME"
"$PGBIN/pg_restore" "${INTEGRATION[@]}" --no-owner --no-acl --role="$NAME" -d "$NAME" "$WORK/manual.dump"
su_psql -p "$INTEGRATION_PORT" -d postgres -c "CHECKPOINT;"
start=$(now); odoo; end=$(now); ODOO=$(elapsed "$start" "$end")
echo "# odoo-db $ODOO s" >&2
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
BACKUP=$(stat -c %s "$(ls -t "$WORK"/backups/*.dump | head -n 1)")
PG_VERSION=$("$PGBIN/postgres" --version | sed 's/.*) //')

printf '\nRefresh of a %s production database (PostgreSQL %s, %s CPUs, load average %s before, %s after):\n\n' \
    "$SIZE" "$PG_VERSION" "$(nproc)" "$LOAD_BEFORE" "$LOAD_AFTER"
printf '| sequence | seconds | ratio | target |\n|---|---:|---:|---:|\n'
printf '| manual: `pg_dump -Fc` (primary) + `dropdb` + `createdb` + `pg_restore` | %.2f | 1.00 | |\n' "$MANUAL"
printf '| `odoo-db refresh --yes --jobs %s` (backup of a %s MB dump alongside the dump from the standby, neutralized) | %.2f | %.2f | <= 0.50 |\n' \
    "$JOBS" "$((BACKUP / 1048576))" "$ODOO" "$(echo "$ODOO / $MANUAL" | bc -l)"
