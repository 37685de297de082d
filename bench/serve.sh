#!/usr/bin/env bash
# Benchmark (not a test): `odoo-db serve` on the sandbox (production primary + streaming
# standby, integration primary), measured side by side in one run with what it replaces:
#   - a cold probe of every cluster (the first /metrics after start): wall time, and
#     serve's peak RSS (VmHWM) after it and after all the scrapes below;
#   - cached /metrics scrapes (within min_interval): p50/p99 latency over SCRAPES
#     scrapes on one keep-alive connection, as Prometheus scrapes;
#   - a warm probe (min_interval 0: every scrape probes, on pooled sessions): p50;
#   - sessions held per server between probes (pg_stat_activity);
#   - the same clusters with `odoo-db health` processes one after another, and with
#     check_postgres hot_standby_delay: medians, and the ratios.
#   bench/serve.sh [SCRAPES]      (default 1000)
# The fleet of the issue (20 clusters of primary + standby, one config) is bench/fleet.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRAPES=${1:-1000}
scripts/install-deps >/dev/null
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/odoo-db
CHECK_POSTGRES=$(command -v check_postgres || command -v check_postgres.pl || true)
[ -n "$CHECK_POSTGRES" ] || { echo "bench/serve.sh: check_postgres is missing (Debian: check-postgres)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/odoo-db-bench.XXXXXX)
chmod 755 "$WORK"
SERVE_PIDS=()
cleanup() {
  for pid in "${SERVE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$BIN" sandbox down --dir "$WORK/sandbox" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" sandbox up --dir "$WORK/sandbox" > "$WORK/exports"
# shellcheck disable=SC1090
source "$WORK/exports"
"$BIN" init >/dev/null
PRIMARY_PORT=$(grep -o 'primary = "postgresql://[^"]*' "$ODOO_DB_CONFIG" | head -1 | grep -o '127.0.0.1:[0-9]*' | cut -d: -f2)
STANDBY_PORT=$((PRIMARY_PORT + 1))
export PGSSLMODE=disable
for _ in $(seq 1 100); do "$BIN" -q health --format nagios >/dev/null && break; sleep 0.1; done

# shellcheck source=bench/lib.sh
source bench/lib.sh

# 1. Cold probe and cached scrapes (min_interval 1h: everything after the first is cached).
read -r PID PORT < <(serve_start "$ODOO_DB_CONFIG" 1h)
SERVE_PIDS+=("$PID")
RSS_START=$(rss_kb "$PID")
read -r _ _ COLD < <(scrape "$PORT" /metrics 1)
RSS_COLD=$(rss_kb "$PID")
read -r CACHED_P50 CACHED_P99 _ < <(scrape "$PORT" /metrics "$SCRAPES")
RSS_END=$(rss_kb "$PID")
# psql itself shows as application_name psql, so only serve's sessions count.
HELD_PRIMARY=$(serve_sessions "$PRIMARY_PORT")
HELD_STANDBY=$(serve_sessions "$STANDBY_PORT")
kill "$PID"; wait "$PID" 2>/dev/null || true

# 2. Warm probes: every scrape probes, on the pooled sessions.
read -r PID PORT < <(serve_start "$ODOO_DB_CONFIG" 0s)
SERVE_PIDS+=("$PID")
read -r WARM_P50 WARM_P99 _ < <(scrape "$PORT" /metrics 50)
kill "$PID"; wait "$PID" 2>/dev/null || true

# 3. What it replaces: a health process per run, and check_postgres, one after another.
median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]}'; }
runs=20
health_ms=$(for _ in $(seq 1 $runs); do
  s=$(date +%s%N); "$BIN" -q health --format nagios >/dev/null || true; e=$(date +%s%N)
  echo $(( (e - s) / 1000 )) | awk '{print $1/1000}'
done | median_ms)
check_ms=$(for _ in $(seq 1 $runs); do
  s=$(date +%s%N)
  "$CHECK_POSTGRES" --action=hot_standby_delay --dbhost=127.0.0.1,127.0.0.1 \
    --dbport="$PRIMARY_PORT,$STANDBY_PORT" --dbuser=odoo_db_admin --dbname=postgres \
    --warning='16777216 and 30s' --critical='268435456 and 300s' >/dev/null || true
  e=$(date +%s%N)
  echo $(( (e - s) / 1000 )) | awk '{print $1/1000}'
done | median_ms)

cat <<TABLE
| what | serve | alternative | ratio |
|---|---|---|---|
| cold probe of every cluster (first /metrics) | ${COLD} ms, RSS ${RSS_COLD} kB (${RSS_START} kB at start) | | |
| cached /metrics, ${SCRAPES} scrapes | p50 ${CACHED_P50} ms, p99 ${CACHED_P99} ms; RSS after ${RSS_END} kB | | |
| warm probe (pooled sessions, every scrape probes) | p50 ${WARM_P50} ms, p99 ${WARM_P99} ms | \`odoo-db health\` process, both clusters: ${health_ms} ms | $(awk -v a="$WARM_P50" -v b="$health_ms" 'BEGIN{printf "%.2f", a/b}') |
| | | check_postgres hot_standby_delay, production: ${check_ms} ms | $(awk -v a="$WARM_P50" -v b="$check_ms" 'BEGIN{printf "%.2f", a/b}') |
| sessions held between probes | primary ${HELD_PRIMARY}, standby ${HELD_STANDBY} | | |
TABLE
