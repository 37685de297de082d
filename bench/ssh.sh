#!/usr/bin/env bash
# Benchmark (not a test): `odoo-db health` on a sandbox, direct versus through an SSH
# bastion (a throwaway sshd on 127.0.0.1 with generated keys, like tests/it/ssh.rs), to
# measure what the tunnel adds: one SSH master (TCP, key exchange, authentication), a
# local forward per server, every connection through it, and closing it all.
# Target: the tunnel adds at most 300 ms to a health run. Then `odoo-db serve`, whose SSH
# master stays up: a probe per scrape, direct versus through the bastion (target: at most
# 20 ms more, p50). Prints markdown tables.
#   bench/ssh.sh [RUNS]      (default 30; needs root for sshd, hyperfine if available)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
scripts/install-deps >/dev/null
if ! command -v hyperfine >/dev/null; then
  (apt-get install -y -qq hyperfine >/dev/null 2>&1) || echo "(hyperfine not available: timing with a shell loop)" >&2
fi
# ODOO_DB_BIN: a binary built beforehand (the tree may change while this runs).
if [ -z "${ODOO_DB_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${ODOO_DB_BIN:-$PWD/target/release/odoo-db}
WORK=$(mktemp -d /tmp/odoo-db-bench-ssh.XXXXXX)
chmod 755 "$WORK"
SSHD_PID=
SERVE_PIDS=()
cleanup() {
  for pid in "${SERVE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true
  "$BIN" sandbox down --dir "$WORK/sandbox" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" sandbox up --dir "$WORK/sandbox" > "$WORK/exports"
# shellcheck disable=SC1090
source "$WORK/exports"
"$BIN" init >/dev/null

# The bastion: sshd on a free port, its host key in known_hosts, our key authorized.
mkdir -p /run/sshd "$WORK/ssh"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/client_key"
cp "$WORK/ssh/client_key.pub" "$WORK/ssh/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/ssh/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/ssh/host_key
PidFile $WORK/ssh/sshd.pid
AuthorizedKeysFile $WORK/ssh/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxStartups 100
EOF
/usr/sbin/sshd -D -f "$WORK/ssh/sshd_config" -E "$WORK/ssh/sshd.log" &
SSHD_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
echo "[127.0.0.1]:$PORT $(cat "$WORK/ssh/host_key.pub")" > "$WORK/ssh/known_hosts"

# The same config, every cluster behind the bastion.
awk -v user="$(id -un)" -v port="$PORT" -v dir="$WORK/ssh" '
  { print }
  /^kind = / {
    printf "ssh = \"ssh://%s@127.0.0.1:%s\"\nssh_identity = \"%s/client_key\"\nssh_known_hosts = \"%s/known_hosts\"\n", user, port, dir, dir
  }' "$ODOO_DB_CONFIG" > "$WORK/ssh.toml"

DIRECT="$BIN --config $ODOO_DB_CONFIG health --format nagios"
THROUGH="$BIN --config $WORK/ssh.toml health --format nagios"
$DIRECT >/dev/null
$THROUGH >/dev/null
# For reference, the floor: the same SSH master, started and stopped by ssh alone.
SSH_ALONE="sh -c 'ssh -S $WORK/ssh/m -M -f -N -o BatchMode=yes -o StrictHostKeyChecking=yes \
  -o UserKnownHostsFile=$WORK/ssh/known_hosts -o IdentitiesOnly=yes -i $WORK/ssh/client_key \
  -p $PORT $(id -un)@127.0.0.1 && ssh -S $WORK/ssh/m -O exit x 2>/dev/null'"

if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/h.json" \
    -n direct "$DIRECT" -n bastion "$THROUGH" -n ssh-alone "$SSH_ALONE" >&2
  read -r direct_mean direct_sd direct_median bastion_mean bastion_sd bastion_median \
    alone_mean alone_sd alone_median < <(python3 - "$WORK/h.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
print(*(f'{r[n][k]*1000:.0f}' for n in ("direct", "bastion", "ssh-alone") for k in ("mean", "stddev", "median")))
EOF
  )
else
  timed() { # command → mean, sd, median in ms
    local times=()
    for _ in $(seq 1 "$RUNS"); do
      local s e; s=$(date +%s%N); eval "$1" >/dev/null; e=$(date +%s%N)
      times+=($(( (e - s) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | python3 -c '
import statistics, sys
t = [int(x) / 1000 for x in sys.stdin]
print(f"{statistics.mean(t):.0f} {statistics.stdev(t):.0f} {statistics.median(t):.0f}")'
  }
  read -r direct_mean direct_sd direct_median < <(timed "$DIRECT")
  read -r bastion_mean bastion_sd bastion_median < <(timed "$THROUGH")
  read -r alone_mean alone_sd alone_median < <(timed "$SSH_ALONE")
fi

# serve, whose SSH master stays up between probes (issue 15: scrapes after the first add
# at most 20 ms over direct connections). min_interval 0: every scrape probes every server,
# on pooled sessions, through the forwards of the one master.
# shellcheck source=bench/lib.sh
source bench/lib.sh
SCRAPES=$((RUNS * 5))
read -r PID SPORT < <(serve_start "$ODOO_DB_CONFIG" 0s)
SERVE_PIDS+=("$PID")
read -r serve_direct_p50 serve_direct_p99 serve_direct_first < <(scrape "$SPORT" /metrics "$SCRAPES")
kill "$PID"; wait "$PID" 2>/dev/null || true
read -r PID SPORT < <(serve_start "$WORK/ssh.toml" 0s)
SERVE_PIDS+=("$PID")
read -r serve_bastion_p50 serve_bastion_p99 serve_bastion_first < <(scrape "$SPORT" /metrics "$SCRAPES")
serve_masters=$(pgrep -f "odoo-db-ssh-" | wc -l)
kill "$PID"; wait "$PID" 2>/dev/null || true

printf '| odoo-db health, %s runs | mean (ms) | ± sd | median (ms) |\n|---|---|---|---|\n' "$RUNS"
printf '| direct | %s | %s | %s |\n' "$direct_mean" "$direct_sd" "$direct_median"
printf '| through the SSH bastion | %s | %s | %s |\n' "$bastion_mean" "$bastion_sd" "$bastion_median"
printf '| (reference: ssh alone, master up and closed) | %s | %s | %s |\n' "$alone_mean" "$alone_sd" "$alone_median"
printf '\nthe tunnel adds %s ms (mean), %s ms (median); target: at most 300 ms\n' \
  "$((bastion_mean - direct_mean))" "$((bastion_median - direct_median))"
printf '\n| odoo-db serve, a probe per scrape (%s scrapes after the first) | p50 (ms) | p99 (ms) | first scrape (ms) |\n|---|---|---|---|\n' "$SCRAPES"
printf '| direct | %s | %s | %s |\n' "$serve_direct_p50" "$serve_direct_p99" "$serve_direct_first"
printf '| through the SSH bastion (%s ssh process(es) while serving) | %s | %s | %s |\n' "$serve_masters" "$serve_bastion_p50" "$serve_bastion_p99" "$serve_bastion_first"
printf '\nthrough the bastion, scrapes after the first add %s ms (p50); target: at most 20 ms\n' \
  "$(awk -v a="$serve_bastion_p50" -v b="$serve_direct_p50" 'BEGIN{printf "%.2f", a-b}')"
printf '(load average while measuring: %s)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
leftover=$(pgrep -f "odoo-db-ssh-" || true)
[ -z "$leftover" ] || echo "WARNING: ssh processes left: $leftover" >&2
