#!/usr/bin/env bash
# Benchmark (not a test): provision N customers on both environments of a sandbox with
# odoo-db, versus a shell loop doing the same work with the stock tools (createuser,
# psql ALTER ROLE … PASSWORD, createdb -O, psql REVOKE/GRANT) as the same
# least-privilege role, one after the other in one run. Prints a markdown table.
#   bench/provision.sh [N]      (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
scripts/install-deps >/dev/null
cargo build --release --quiet
BIN=$PWD/target/release/odoo-db
WORK=$(mktemp -d /tmp/odoo-db-bench.XXXXXX)
chmod 755 "$WORK"
trap '"$BIN" sandbox down --dir "$WORK/sandbox" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

"$BIN" sandbox up --dir "$WORK/sandbox" > "$WORK/exports"
# shellcheck disable=SC1090
source "$WORK/exports"
"$BIN" init >/dev/null
PRIMARY_PORT=$(awk -F'[:/@]' '/^primary/ {print $0}' "$ODOO_DB_CONFIG" | grep -o '127.0.0.1:[0-9]*' | head -1 | cut -d: -f2)
INTEGRATION_PORT=$((PRIMARY_PORT + 2))
PSQL_BINDIR=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
export PGUSER=odoo_db_admin PGHOST=127.0.0.1 PGDATABASE=postgres

now() { date +%s.%N; }

start=$(now)
for i in $(seq 1 "$N"); do
  mkdir -m 700 "$WORK/secrets-$i"
  "$BIN" -q provision --customer "bench-odoo-$i" --secrets-dir "$WORK/secrets-$i" >/dev/null
done
odoo_db=$(echo "$(now) - $start" | bc)

# The stock-tools loop, as the DBAs do it today, per customer and server.
stock_one() { # port name
  local port=$1 name=$2 password
  password=$(head -c 300 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9' | cut -c1-20)
  "$PSQL_BINDIR/createuser" -p "$port" --login "$name"
  "$PSQL_BINDIR/psql" -X -q -p "$port" -c "ALTER ROLE $name PASSWORD '$password'"
  "$PSQL_BINDIR/psql" -X -q -p "$port" -c "GRANT $name TO odoo_db_admin" 2>/dev/null || true
  "$PSQL_BINDIR/createdb" -p "$port" -O "$name" -T template0 -E UTF8 "$name"
  "$PSQL_BINDIR/psql" -X -q -p "$port" -c "REVOKE CONNECT, TEMPORARY ON DATABASE $name FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE $name TO $name"
}
start=$(now)
for i in $(seq 1 "$N"); do
  stock_one "$PRIMARY_PORT" "stock_loop_$i"
  stock_one "$INTEGRATION_PORT" "stock_loop_${i}_integration"
done
stock=$(echo "$(now) - $start" | bc)

ratio=$(echo "scale=2; $odoo_db / $stock" | bc)
printf '| provision %s customers, both environments | total (s) | per customer (ms) |\n|---|---|---|\n' "$N"
printf '| stock tools loop (createuser, psql, createdb, psql) | %.2f | %.0f |\n' "$stock" "$(echo "$stock * 1000 / $N" | bc -l)"
printf '| odoo-db provision | %.2f | %.0f |\n' "$odoo_db" "$(echo "$odoo_db * 1000 / $N" | bc -l)"
printf '\nodoo-db / stock loop = %s (target: at most 0.5)\n' "$ratio"
