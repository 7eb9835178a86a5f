#!/usr/bin/env bash
# Where a proxy's time goes per unit of work, by system call: `strace -c` on the forwarder and its
# peers in one run, divided by the work the load tool counted while strace watched.
#
#   bench/forwarder-syscalls.sh            # SECS=4
#
# TCP: `l4bench connrate` (connect, 1-byte echo, close with RST, 32 at a time) through the forwarder
# (admin endpoint off, then on, as the binary's default) and HAProxy (mode tcp, splice-auto):
# syscalls per connection. UDP: `l4bench udp-pps` (16 clients, request/response) through the
# forwarder and socat (fork per client; strace follows the children): syscalls per reply.
#
# strace slows every call down, so the rates printed here are not the proxies' rates (see
# bench/forwarder.sh for those); the counts per unit of work are what this measures. Listens on
# 127.91.0.0/16.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SECS=${SECS:-4}
OUT=${OUT:-$ROOT/target/bench-forwarder-syscalls}
mkdir -p "$OUT"

EP=127.91.0.1   # echo servers
FW=127.91.1.10  # the forwarder's ClusterIP (admin off)
FA=127.91.4.10  # a second forwarder, admin endpoint on
HA=127.91.2.10  # HAProxy
SO=127.91.3.10  # socat (UDP)

need_tools haproxy socat strace
ulimit -n "$(ulimit -Hn)"

build_l4


"$B" echo-tcp "$EP:7000" & PIDS+=($!)
"$B" echo-udp "$EP:7001" & PIDS+=($!)
for fw in "$FW" "$FA"; do
  sed "s/@EP@/$EP/g; s/@FW@/$fw/g" "$ROOT/bench/forwarder/cluster.yaml" >"$OUT/cluster-$fw.yaml"
done
RUST_LOG=info,hop=warn "$FWD" --config "$OUT/cluster-$FW.yaml" --healthz-bind-address "" --admin-address "" \
  --udp-timeout 60s >"$OUT/forwarder.log" 2>&1 & FWD_PID=$!; PIDS+=($FWD_PID)
RUST_LOG=info,hop=warn "$FWD" --config "$OUT/cluster-$FA.yaml" --healthz-bind-address "" --admin-address "$FA:10249" \
  --udp-timeout 60s >"$OUT/forwarder-admin.log" 2>&1 & FA_PID=$!; PIDS+=($FA_PID)
sed "s/@EP@/$EP/g; s/@HA@/$HA/g; s/@MAXCONN@/5000/g" "$ROOT/bench/forwarder/haproxy.cfg" >"$OUT/haproxy.cfg"
haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($HA_PID)
socat -T 10 UDP4-LISTEN:7001,bind=$SO,fork,reuseaddr UDP4:$EP:7001 2>/dev/null & SO_PID=$!; PIDS+=($SO_PID)
sleep 1

# strace the process (and its threads and new children) for the whole load run.
traced() { # name pid load-command...
  local name=$1 pid=$2; shift 2
  strace -c -f -p "$pid" -o "$OUT/$name.strace" 2>/dev/null & local st=$!
  sleep 0.5
  "$@" >"$OUT/$name.load"
  kill -INT "$st"; wait "$st" 2>/dev/null || true
}
traced forwarder-tcp "$FWD_PID" "$B" connrate "$FW:7000" "$SECS" 32
traced forwarder-admin-tcp "$FA_PID" "$B" connrate "$FA:7000" "$SECS" 32
traced haproxy-tcp "$HA_PID" "$B" connrate "$HA:7000" "$SECS" 32
traced forwarder-udp "$FWD_PID" "$B" udp-pps "$FW:7001" "$SECS" 16
traced socat-udp "$SO_PID" "$B" udp-pps "$SO:7001" "$SECS" 16

python3 - "$OUT" "$SECS" <<'EOF'
import re, sys
out, secs = sys.argv[1], float(sys.argv[2])
def load(name):
    text = open(f"{out}/{name}.load").read()
    m = re.search(r"(conn_per_s|udp_pps)=([0-9.]+)", text)
    return float(m.group(2)) * secs
def calls(name):
    rows = {}
    for line in open(f"{out}/{name}.strace"):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            n = int(f[3]); errors = int(f[4]) if len(f) == 6 else 0
            rows[f[-1]] = (n, errors)
    return rows
for unit, names in (("connection", ["forwarder-tcp", "forwarder-admin-tcp", "haproxy-tcp"]),
                    ("UDP reply", ["forwarder-udp", "socat-udp"])):
    print(f"\nsyscalls per {unit}")
    for name in names:
        work, rows = load(name), calls(name)
        total = sum(n for n, _ in rows.values())
        top = sorted(rows.items(), key=lambda kv: -kv[1][0])
        detail = ", ".join(f"{s} {n / work:.2f}" + (f" ({e / work:.2f} failed)" if e else "")
                           for s, (n, e) in top if n / work >= 0.05)
        print(f"  {name:22} {total / work:6.2f}   over {work:,.0f}: {detail}")
EOF
