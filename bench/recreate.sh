#!/usr/bin/env bash
# Benchmark (not a test): `odoo-db recreate` of a ~SIZE_MB integration database versus
# the manual sequence it replaces, side by side in one run on a throwaway sandbox:
#
#   manual, with backup:     pg_dump -Fc (default compression) + dropdb --force + createdb -O
#   odoo-db, with backup:    odoo-db recreate NAME --yes        (pg_dump -Fc --compress=<config>,
#                            read back whole, every property restored, catalog records)
#   manual, no backup:       dropdb --force + createdb -O
#   odoo-db, no backup:      odoo-db recreate NAME --yes --no-backup
#
# Targets (issue 4): with backup <= 0.5 x the manual sequence; without <= 1.1 x.
# Before every timed variant the database is put back from a template copy of the
# generated data and a CHECKPOINT is taken, so each variant starts from the same state.
# Everything runs as odoo-db's least-privilege role over TCP, like odoo-db itself.
#
# usage: bench/recreate.sh [SIZE_MB (default 500)] [RUNS (default 1)] [PLAIN_RUNS (default 3 x RUNS)]
# Medians are shown. The pair without backup takes a fraction of a second, where a
# shared machine's noise is of the same size: it gets more runs (it is cheap).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${1:-500}
RUNS=${2:-1}
PLAIN_RUNS=${3:-$((3 * RUNS))}
cargo build --release --quiet
BIN=$PWD/target/release/odoo-db

# shellcheck source=bench/lib.sh
source bench/lib.sh
sandbox_start 56000
export ODOO_DB_CONFIG=$SANDBOX/odoo-db.toml PGPASSFILE=$SANDBOX/pgpass
"$BIN" -q init >/dev/null
mkdir -m 700 "$WORK/secrets"
"$BIN" -q provision --customer bench-co --env integration --secrets-dir "$WORK/secrets" >"$WORK/names.env"
NAME=$(sed -n 's/^export DB_NAME=//p' "$WORK/names.env")
PORT=$(sed -n 's/^export DB_PORT=//p' "$WORK/names.env")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PGBIN=${PG_BINDIR:-${PGBIN:-$(pg_config --bindir)}}

# The superuser over the sandbox's Unix socket (trusted there) prepares the data; the
# timed commands run as odoo_db_admin over TCP.
su_psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SANDBOX/sock" -p "$PORT" -U postgres "$@"; }
TCP=(-h 127.0.0.1 -p "$PORT" -U odoo_db_admin)

ROWS=$((SIZE_MB * 3200))
echo "# generating ~${SIZE_MB} MB ($ROWS partner-like rows) in a template database" >&2
su_psql -d postgres -c "CREATE DATABASE bench_src OWNER \"$NAME\""
su_psql -d bench_src <<SQL
CREATE TABLE res_partner AS
SELECT g AS id,
       'Partner ' || g AS name,
       md5(g::text) || '@example.com' AS email,
       (random() * 100000)::int AS company_id,
       now() - g * interval '1 minute' AS create_date,
       repeat(substr(md5((g % 1000)::text), 1, 16) || ' lorem ipsum dolor sit amet ', 4) AS comment
  FROM generate_series(1, $ROWS) AS g;
ALTER TABLE res_partner ADD PRIMARY KEY (id);
ALTER TABLE res_partner OWNER TO "$NAME";
VACUUM ANALYZE res_partner;
SQL
SIZE=$(su_psql -d postgres -At -c "SELECT pg_size_pretty(pg_database_size('bench_src'))")

refill() {
    su_psql -d postgres <<SQL >/dev/null
DROP DATABASE IF EXISTS "$NAME" WITH (FORCE);
CREATE DATABASE "$NAME" TEMPLATE bench_src OWNER "$NAME" STRATEGY FILE_COPY;
REVOKE CONNECT, TEMPORARY ON DATABASE "$NAME" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "$NAME" TO "$NAME";
CHECKPOINT;
SQL
    # Warm the cache the same way for every variant.
    su_psql -d "$NAME" -At -c "SELECT count(*) FROM res_partner" >/dev/null
}

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

manual_backup() {
    rm -f "$WORK/manual.dump"
    "$PGBIN/pg_dump" "${TCP[@]}" -Fc -f "$WORK/manual.dump" "$NAME"
    "$PGBIN/dropdb" "${TCP[@]}" --force "$NAME"
    "$PGBIN/createdb" "${TCP[@]}" -O "$NAME" "$NAME"
}
manual_plain() {
    "$PGBIN/dropdb" "${TCP[@]}" --force "$NAME"
    "$PGBIN/createdb" "${TCP[@]}" -O "$NAME" "$NAME"
}
odoo_backup() { "$BIN" -q recreate "$NAME" --yes --backup-dir "$WORK/backups" >/dev/null; }
odoo_plain() { "$BIN" -q recreate "$NAME" --yes --no-backup >/dev/null; }

declare -A TIMES LAST
VARIANTS=(manual_backup odoo_backup manual_plain odoo_plain)
RATIO_BACKUP="" RATIO_PLAIN=""
for run in $(seq 1 $((RUNS > PLAIN_RUNS ? RUNS : PLAIN_RUNS))); do
    for variant in "${VARIANTS[@]}"; do
        case $variant in
            *_backup) [ "$run" -le "$RUNS" ] || continue ;;
            *) [ "$run" -le "$PLAIN_RUNS" ] || continue ;;
        esac
        refill
        start=$(now)
        "$variant"
        end=$(now)
        LAST[$variant]=$(elapsed "$start" "$end")
        TIMES[$variant]+="${LAST[$variant]} "
        echo "# run $run: $variant ${LAST[$variant]} s" >&2
    done
    # Each run measures both sides minutes apart at most: on a shared machine the
    # ratio within a run is steadier than the ratio of medians.
    if [ "$run" -le "$RUNS" ]; then
        RATIO_BACKUP+="$(echo "${LAST[odoo_backup]} / ${LAST[manual_backup]}" | bc -l) "
    fi
    if [ "$run" -le "$PLAIN_RUNS" ]; then
        RATIO_PLAIN+="$(echo "${LAST[odoo_plain]} / ${LAST[manual_plain]}" | bc -l) "
    fi
done

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
MB=$(median "${TIMES[manual_backup]}")
OB=$(median "${TIMES[odoo_backup]}")
MP=$(median "${TIMES[manual_plain]}")
OP=$(median "${TIMES[odoo_plain]}")
DUMP_MANUAL=$(stat -c %s "$WORK/manual.dump")
DUMP_ODOO=$(stat -c %s "$(ls -t "$WORK"/backups/*.dump | head -n 1)")
PG_VERSION=$("$PGBIN/postgres" --version | sed 's/.*) //')
COMPRESSION=$(grep -A3 '^\[recreate\]' "$ODOO_DB_CONFIG" | sed -n 's/^compression *= *//p')

printf '\nRecreate of a %s integration database (PostgreSQL %s, %s CPUs; medians of %s runs with backup, %s without):\n\n' \
    "$SIZE" "$PG_VERSION" "$(nproc)" "$RUNS" "$PLAIN_RUNS"
printf '| sequence | seconds | dump size | ratio of medians | median of per-run ratios | target |\n|---|---:|---:|---:|---:|---:|\n'
printf '| manual: `pg_dump -Fc` (default compression) + `dropdb --force` + `createdb -O` | %.2f | %s MB | 1.00 | 1.00 | |\n' \
    "$MB" "$((DUMP_MANUAL / 1048576))"
printf '| `odoo-db recreate --yes` (pg_dump -Fc --compress=%s, read back whole) | %.2f | %s MB | %.2f | %.2f | <= 0.50 |\n' \
    "${COMPRESSION:-1}" "$OB" "$((DUMP_ODOO / 1048576))" "$(echo "$OB / $MB" | bc -l)" "$(median "$RATIO_BACKUP")"
printf '| manual: `dropdb --force` + `createdb -O` | %.2f | | 1.00 | 1.00 | |\n' "$MP"
printf '| `odoo-db recreate --yes --no-backup` | %.2f | | %.2f | %.2f | <= 1.10 |\n' \
    "$OP" "$(echo "$OP / $MP" | bc -l)" "$(median "$RATIO_PLAIN")"
