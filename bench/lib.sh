# Shared by the benchmarks: a sandbox of the bench's own (recreate.sh, refresh.sh,
# lifecycle.sh), and for the serve benchmarks (serve.sh, fleet.sh, ssh.sh) starting
# `odoo-db serve`, timing scrapes the way Prometheus makes them and reading what serve
# holds. Sourced, not run; the caller sets BIN (the odoo-db binary), and WORK (its
# scratch directory) unless sandbox_start makes it.

# A new scratch directory WORK with a sandbox in SANDBOX=$WORK/sandbox, on three free
# consecutive ports BASE..BASE+2 drawn from FIRST_PORT..FIRST_PORT+2999 (away from 5432
# and the sandbox's default range); both are removed when the script exits.
#   sandbox_start FIRST_PORT
sandbox_start() {
  WORK=$(mktemp -d /tmp/odoo-db-bench-XXXXXX)
  chmod 711 "$WORK" # the servers run as the postgres OS user when we are root
  SANDBOX=$WORK/sandbox
  trap sandbox_remove EXIT
  local _
  for _ in $(seq 1 50); do
    BASE=$(($1 + RANDOM % 3000))
    listening "$BASE" || listening $((BASE + 1)) || listening $((BASE + 2)) || break
  done
  echo "# starting a sandbox in $SANDBOX (ports $BASE-$((BASE + 2)))" >&2
  "$BIN" -q sandbox up --dir "$SANDBOX" --port "$BASE" >"$WORK/exports"
}

sandbox_remove() {
  "$BIN" sandbox down --dir "$SANDBOX" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

listening() { ss -Hltn "sport = :$1" | grep -q .; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts `serve` on CONFIG with [serve] min_interval = INTERVAL (replacing the config's
# own min_interval line, or adding a [serve] section); prints "pid port" once it listens.
#   serve_start CONFIG INTERVAL
serve_start() {
  local config=$1 interval=$2 copy port pid
  copy="$WORK/serve-$(basename "$config" .toml)-$interval.toml"
  if grep -q '^min_interval = ' "$config"; then
    sed "s/^min_interval = .*/min_interval = \"$interval\"/" "$config" > "$copy"
  else
    { cat "$config"; printf '\n[serve]\nmin_interval = "%s"\n' "$interval"; } > "$copy"
  fi
  port=$(free_port)
  ODOO_DB_CONFIG=$copy "$BIN" -q serve --listen "127.0.0.1:$port" &
  pid=$!
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.05
  done
  echo "$pid $port"
}

# Latencies of N scrapes of PATH on one keep-alive connection, as Prometheus scrapes:
# "p50_ms p99_ms first_ms" (the percentiles leave the first scrape out).
#   scrape PORT PATH N
scrape() {
  python3 - "$1" "$2" "$3" <<'PY'
import http.client, sys, time
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
times = []
for _ in range(n):
    t = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse(); body = r.read()
    assert r.status == 200 and b"odoo_db_up" in body, r.status
    times.append((time.perf_counter() - t) * 1000)
first = times[0]
rest = sorted(times[1:]) or [first]
pick = lambda q: rest[min(len(rest) - 1, int(q * len(rest)))]
print(f"{pick(0.5):.2f} {pick(0.99):.2f} {first:.1f}")
PY
}

# Peak resident memory of a process, in kB.
rss_kb() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

# serve's sessions on the server at PORT (psql shows as application_name psql, so it is
# left out).
serve_sessions() {
  psql -X -At -h 127.0.0.1 -p "$1" -U odoo_db_admin -d postgres \
    -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'odoo-db' AND pid <> pg_backend_pid()"
}
