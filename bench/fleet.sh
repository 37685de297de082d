#!/usr/bin/env bash
# Benchmark (not a test): one `odoo-db serve` watching a fleet of CLUSTERS clusters, each
# a primary + streaming standby started with the sandbox code (`odoo-db sandbox up`, whose
# integration servers stay out of the fleet config), measured side by side in one run:
#   - a cold probe of every cluster (the first /metrics after start): wall time, and
#     serve's peak RSS (VmHWM) after it and after the scrapes below;
#   - cached /metrics scrapes (within min_interval): p50/p99 over SCRAPES scrapes on one
#     keep-alive connection, as Prometheus scrapes;
#   - a warm probe of every cluster (min_interval 0: every scrape probes, pooled sessions);
#   - sessions held per server between probes (pg_stat_activity), min and max over the
#     2×CLUSTERS servers;
#   - the same clusters with one `odoo-db health --cluster cNN` process per cluster, one
#     after another, and with check_postgres hot_standby_delay per cluster: the ratios.
#   bench/fleet.sh [CLUSTERS] [SCRAPES]      (defaults 20 and 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTERS=${1:-20}
SCRAPES=${2:-1000}
BASE_PORT=${FLEET_BASE_PORT:-47000}
scripts/install-deps >/dev/null
if [ -z "${ODOO_DB_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${ODOO_DB_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/odoo-db}
CHECK_POSTGRES=$(command -v check_postgres || command -v check_postgres.pl || true)
[ -n "$CHECK_POSTGRES" ] || { echo "bench/fleet.sh: check_postgres is missing (Debian: check-postgres)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/odoo-db-fleet.XXXXXX)
chmod 755 "$WORK"
SERVE_PIDS=()
cleanup() {
  for pid in "${SERVE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for dir in "$WORK"/c*; do
    [ -d "$dir" ] && "$BIN" sandbox down --dir "$dir" >/dev/null 2>&1 &
  done
  wait
  rm -rf "$WORK"
}
trap cleanup EXIT

name_of() { printf 'c%02d' "$1"; }
port_of() { echo $((BASE_PORT + 10 * ($1 - 1))); }

# 1. The fleet: four sandboxes start at a time (each is initdb ×2, pg_basebackup, waits).
echo "starting $CLUSTERS primary + standby pairs (sandbox code)..." >&2
for i in $(seq 1 "$CLUSTERS"); do
  "$BIN" -q sandbox up --dir "$WORK/$(name_of "$i")" --port "$(port_of "$i")" >/dev/null &
  if (( i % 4 == 0 )); then wait; fi
done
wait
for i in $(seq 1 "$CLUSTERS"); do
  [ -f "$WORK/$(name_of "$i")/odoo-db.toml" ] || { echo "sandbox $(name_of "$i") did not start" >&2; exit 1; }
done

# One config: the sandboxes' production clusters as c01..cNN (kind production, primary +
# standby), the catalog on c01; one pgpass with every sandbox's lines (ports differ).
CONFIG=$WORK/fleet.toml
PGPASS=$WORK/pgpass
{
  printf '[catalog]\ncluster = "c01"\ndatabase = "odoo_db"\n'
  for i in $(seq 1 "$CLUSTERS"); do
    name=$(name_of "$i")
    printf '\n[clusters.%s]\nkind = "production"\n' "$name"
    # The sandbox's [clusters.production] section: its primary and standbys lines.
    awk '/^\[clusters.production\]/{p=1; next} /^\[/{p=0} p && /^(primary|standbys) =/' "$WORK/$name/odoo-db.toml"
  done
  printf '\n[serve]\nmin_interval = "1h"\n'
} > "$CONFIG"
cat "$WORK"/c*/pgpass > "$PGPASS"
chmod 600 "$PGPASS"
export ODOO_DB_CONFIG=$CONFIG PGPASSFILE=$PGPASS PGSSLMODE=disable
"$BIN" -q init >/dev/null
for _ in $(seq 1 100); do "$BIN" -q health --format nagios >/dev/null && break; sleep 0.2; done

# shellcheck source=bench/lib.sh
source bench/lib.sh

# 2. Cold probe and cached scrapes (min_interval 1h: everything after the first is cached).
read -r PID PORT < <(serve_start "$CONFIG" 1h)
SERVE_PIDS+=("$PID")
RSS_START=$(rss_kb "$PID")
read -r _ _ COLD < <(scrape "$PORT" /metrics 1)
RSS_COLD=$(rss_kb "$PID")
UP=$(python3 -c "import urllib.request; b=urllib.request.urlopen('http://127.0.0.1:$PORT/metrics').read().decode(); print(sum(1 for l in b.splitlines() if l.startswith('odoo_db_up{') and l.endswith(' 1')))")
read -r CACHED_P50 CACHED_P99 _ < <(scrape "$PORT" /metrics "$SCRAPES")
RSS_END=$(rss_kb "$PID")
HELD=$(for i in $(seq 1 "$CLUSTERS"); do p=$(port_of "$i"); serve_sessions "$p"; serve_sessions $((p + 1)); done | sort -n)
HELD_MIN=$(echo "$HELD" | head -1); HELD_MAX=$(echo "$HELD" | tail -1)
kill "$PID"; wait "$PID" 2>/dev/null || true

# 3. Warm probes: every scrape probes every cluster, on the pooled sessions.
read -r PID PORT < <(serve_start "$CONFIG" 0s)
SERVE_PIDS+=("$PID")
read -r WARM_P50 WARM_P99 _ < <(scrape "$PORT" /metrics 20)
kill "$PID"; wait "$PID" 2>/dev/null || true

# 4. What it replaces: one process per cluster, one after another, for the whole fleet.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
s=$(now_ms)
for i in $(seq 1 "$CLUSTERS"); do "$BIN" -q health --cluster "$(name_of "$i")" --format nagios >/dev/null || true; done
HEALTH_MS=$(( $(now_ms) - s ))
s=$(now_ms)
for i in $(seq 1 "$CLUSTERS"); do
  p=$(port_of "$i")
  "$CHECK_POSTGRES" --action=hot_standby_delay --dbhost=127.0.0.1,127.0.0.1 \
    --dbport="$p,$((p + 1))" --dbuser=odoo_db_admin --dbname=postgres \
    --warning='16777216 and 30s' --critical='268435456 and 300s' >/dev/null || true
done
CHECK_MS=$(( $(now_ms) - s ))
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }

cat <<TABLE
load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)
| what ($CLUSTERS clusters, $((2 * CLUSTERS)) servers) | serve | alternative | ratio |
|---|---|---|---|
| cold probe of every cluster (first /metrics; ${UP} servers up) | ${COLD} ms, RSS ${RSS_COLD} kB (${RSS_START} kB at start) | | |
| cached /metrics, ${SCRAPES} scrapes | p50 ${CACHED_P50} ms, p99 ${CACHED_P99} ms; RSS after ${RSS_END} kB | | |
| warm probe of every cluster (pooled sessions, 20 scrapes) | p50 ${WARM_P50} ms, p99 ${WARM_P99} ms | ${CLUSTERS} \`odoo-db health --cluster\` processes one after another: ${HEALTH_MS} ms | $(ratio "$WARM_P50" "$HEALTH_MS") (cold: $(ratio "$COLD" "$HEALTH_MS")) |
| | | check_postgres hot_standby_delay per cluster, one after another: ${CHECK_MS} ms | $(ratio "$WARM_P50" "$CHECK_MS") (cold: $(ratio "$COLD" "$CHECK_MS")) |
| sessions held per server between probes | min ${HELD_MIN}, max ${HELD_MAX} | | |
TABLE
