#!/usr/bin/env bash
# Benchmark (not a test): the customer lifecycle on a throwaway sandbox, a ~SIZE_MB
# production database, each command timed once, and retire next to the manual sequence
# it replaces:
#
#   manual retire:   pg_dump -Fc (default compression) + pg_restore -f /dev/null (read back)
#                    + dropdb + dropuser, on both environments
#   odoo-db retire:  odoo-db retire --customer bench-co --yes (gates re-verified, archive
#                    read back while written, SHA-256, properties and role definition beside
#                    it, catalog records, tombstones)
#
# rotate, suspend and resume are timed for reference (no manual equivalent writes the
# secrets file first or records what it changed).
#
# usage: bench/lifecycle.sh [SIZE_MB (default 200)]
# ODOO_DB_BIN=path uses that binary instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${1:-200}
if [ -z "${ODOO_DB_BIN:-}" ]; then
    cargo build --release --quiet
    BIN=$PWD/target/release/odoo-db
else
    BIN=$ODOO_DB_BIN
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh
sandbox_start 59000
cp "$SANDBOX/odoo-db.toml" "$WORK/odoo-db.toml"
printf '\n[lifecycle]\ngrace = "0s"\narchive_dir = "%s"\n' "$WORK/archives" >>"$WORK/odoo-db.toml"
export ODOO_DB_CONFIG=$WORK/odoo-db.toml PGPASSFILE=$SANDBOX/pgpass
"$BIN" -q init >/dev/null
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PGBIN=${PG_BINDIR:-${PGBIN:-$(pg_config --bindir)}}
PRIMARY=$BASE
INTEGRATION=$((BASE + 2))
su_psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SANDBOX/sock" -U postgres "$@"; }

# One customer per variant, the same data in each production database.
fill() { # NAME
    su_psql -p "$PRIMARY" -d "$1" <<SQL
CREATE TABLE res_partner AS
SELECT g AS id, 'Partner ' || g AS name, md5(g::text) || '@example.com' AS email,
       repeat(substr(md5((g % 1000)::text), 1, 16) || ' lorem ipsum dolor sit amet ', 4) AS comment
  FROM generate_series(1, $((SIZE_MB * 3200))) AS g;
ALTER TABLE res_partner OWNER TO "$1";
SQL
}
provision() { # CUSTOMER
    mkdir -m 700 "$WORK/secrets-$1"
    "$BIN" -q provision --customer "$1" --secrets-dir "$WORK/secrets-$1" | sed -n 's/^export DB_NAME=//p' | head -n 1
}
now() { date +%s.%N; }
timed() { # LABEL COMMAND...
    local start end
    start=$(now)
    "${@:2}" >/dev/null
    end=$(now)
    printf '%-34s %8.3f s\n' "$1" "$(echo "$end - $start" | bc)"
}

MANUAL=$(provision bench-manual)
ODOO=$(provision bench-co)
fill "$MANUAL"
fill "$ODOO"
echo "# production database: $(su_psql -p "$PRIMARY" -d postgres -At -c "SELECT pg_size_pretty(pg_database_size('$ODOO'))")" >&2

timed "rotate (both environments)" "$BIN" -q rotate --customer bench-co --secrets-dir "$WORK/rotated"
timed "suspend (both environments)" "$BIN" -q suspend --customer bench-co --yes
timed "resume (both environments)" "$BIN" -q resume --customer bench-co
"$BIN" -q suspend --customer bench-co --yes >/dev/null

manual_retire() {
    mkdir -p -m 700 "$WORK/manual"
    for spec in "$PRIMARY:$MANUAL" "$INTEGRATION:${MANUAL}_integration"; do
        port=${spec%%:*} name=${spec#*:}
        "$PGBIN/pg_dump" -h 127.0.0.1 -p "$port" -U odoo_db_admin -Fc -f "$WORK/manual/$name.dump" "$name"
        "$PGBIN/pg_restore" -f /dev/null "$WORK/manual/$name.dump"
        "$PGBIN/dropdb" -h 127.0.0.1 -p "$port" -U odoo_db_admin "$name"
        "$PGBIN/dropuser" -h 127.0.0.1 -p "$port" -U odoo_db_admin "$name"
    done
}
timed "manual retire (dump, read, drops)" manual_retire
timed "odoo-db retire" "$BIN" -q retire --customer bench-co --yes
ls -l "$WORK/manual" "$WORK/archives" >&2
