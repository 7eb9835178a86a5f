#!/usr/bin/env bash
# Benchmarks the HA balancer (proxy type 4) against HAProxy configured by the kubeadm HA recipe
# (bench/ha-balancer/haproxy.cfg), both in front of the same three `proxylab apiserver` processes,
# on loopback (127.92.0.0/16).
#
#   bench/ha-balancer.sh                        # ROUNDS=3 SECS=5 FAILOVER_SECS=12 SPREAD_WAIT=60
#   ROUNDS=5 SPREAD_WAIT=120 bench/ha-balancer.sh
#
# Measures, interleaved (every round runs every target in rotating order, so drift and other work
# on the machine hit all alike):
#   1. TLS-passthrough throughput (iperf3, one stream, one backend; "direct" is the physical limit)
#      and new connections per second (l4bench connrate over three echo backends), with each
#      proxy's CPU from /proc (cores used during the throughput run, µs per connection);
#   2. failover: 8 clients send HTTPS requests (admin client certificate, a new connection each)
#      through the proxy; after 3 s apiserver-2 gets SIGKILL; measured: the time until the proxy
#      marks it down (its own stats page, polled every 50 ms) and the requests that failed. Both
#      proxies check as the recipe does: every 2 s, fall 3, rise 2 (ha-balancer GET /readyz with
#      the CA verified, HAProxy GET /healthz with verify none);
#   3. spread: WATCHES watches held through the proxy (reopened when cut), apiserver-2 killed and
#      started again, and SPREAD_WAIT seconds after it is back up, the open connections per
#      apiserver as the proxy's stats page shows them.
# The apiservers are the debug `proxylab` binary unless PROXYLAB names another: they are the same
# backends for both proxies. ha-balancer and the load tools are release builds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
FAILOVER_SECS=${FAILOVER_SECS:-12}
SPREAD_WAIT=${SPREAD_WAIT:-60}
WATCHES=${WATCHES:-30}
OUT=${OUT:-$ROOT/target/bench-ha-balancer}
mkdir -p "$OUT"
RES="$OUT/results.tsv"
: >"$RES"

need_tools haproxy iperf3 curl
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
MAXCONN=$((($(ulimit -n) - 2000) / 2))

( cd "$ROOT" && cargo build --release -q -p proxylab-ha-balancer --bin ha-balancer --example ha_load \
    -p proxylab-forwarder --example l4bench )
HAB="$ROOT/target/release/ha-balancer"
LOADER="$ROOT/target/release/examples/ha_load"
B="$ROOT/target/release/examples/l4bench"
PROXYLAB=${PROXYLAB:-$ROOT/target/debug/proxylab}
[ -x "$PROXYLAB" ] || ( cd "$ROOT" && cargo build -q --bin proxylab )

EP=(127.92.0.1 127.92.0.2 127.92.0.3)        # echo backends (:7000); iperf3 on the first (:5201)
API=(127.92.10.1 127.92.10.2 127.92.10.3)   # apiservers (:6443)
HB=127.92.1.10                              # ha-balancer (api :6443, echo :7000, iperf :5201; admin :8404-8406)
HA=127.92.2.10                              # HAProxy (same ports; stats :8405)

wait_port() { # host port
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1:$2" >&2; exit 1
}

# --- PKI and apiservers -----------------------------------------------------------------------------
PKI="$OUT/pki"
rm -rf "$PKI"
pki_ips=()
for ip in "${API[@]}" $HB $HA; do pki_ips+=(--apiserver-ip "$ip"); done
"$PROXYLAB" pki --dir "$PKI" "${pki_ips[@]}" >/dev/null
declare -A API_PID
start_apiserver() { # index 0..2
  "$PROXYLAB" apiserver --bind-address="${API[$1]}" --secure-port=6443 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --service-cluster-ip-range=127.92.40.0/24 \
    >>"$OUT/apiserver-$(($1 + 1)).log" 2>&1 &
  API_PID[$1]=$!; PIDS+=($!)
  wait_port "${API[$1]}" 6443
}
for i in 0 1 2; do start_apiserver $i; done

# --- backends for throughput and connection rate -----------------------------------------------------
iperf3 -s -B "${EP[0]}" -p 5201 >/dev/null 2>&1 & PIDS+=($!)
for e in "${EP[@]}"; do "$B" echo-tcp "$e:7000" & PIDS+=($!); done

# --- the proxies ------------------------------------------------------------------------------------
# ha-balancer takes one listener per process: one for the apiservers (the recipe's checks), one over
# the echo backends, one over iperf3 (TCP checks). Hop records are kept but not printed per
# connection (HAProxy logs only errors too).
export RUST_LOG=${RUST_LOG:-info,hop=warn}
"$HAB" --listen $HB:6443 --admin-address $HB:8404 --ca-file "$PKI/ca.crt" \
  --backend apiserver-1=${API[0]}:6443 --backend apiserver-2=${API[1]}:6443 --backend apiserver-3=${API[2]}:6443 \
  >"$OUT/ha-balancer-api.log" 2>&1 & HB_API=$!; PIDS+=($!)
"$HAB" --listen $HB:7000 --admin-address $HB:8405 --health-check tcp \
  --backend echo-1=${EP[0]}:7000 --backend echo-2=${EP[1]}:7000 --backend echo-3=${EP[2]}:7000 \
  >"$OUT/ha-balancer-echo.log" 2>&1 & HB_ECHO=$!; PIDS+=($!)
"$HAB" --listen $HB:5201 --admin-address $HB:8406 --health-check tcp --backend iperf=${EP[0]}:5201 \
  >"$OUT/ha-balancer-iperf.log" 2>&1 & HB_IPERF=$!; PIDS+=($!)

sed "s/@HA@/$HA/g; s/@MAXCONN@/$MAXCONN/g; s/@API1@/${API[0]}/; s/@API2@/${API[1]}/; s/@API3@/${API[2]}/; \
     s/@EP1@/${EP[0]}/g; s/@EP2@/${EP[1]}/; s/@EP3@/${EP[2]}/" \
  "$ROOT/bench/ha-balancer/haproxy.cfg" >"$OUT/haproxy.cfg"
haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($!)

for h in $HB $HA; do for p in 6443 7000 5201; do wait_port $h $p; done; done
wait_port $HB 8404; wait_port $HA 8405

# --- reading each proxy's view ------------------------------------------------------------------------
# state NAME: up/down of an apiserver, for ha-balancer (/stats JSON) or haproxy (stats CSV).
hb_state() { curl -s "http://$HB:8404/stats?format=json" |
  python3 -c "import json,sys; print(next(b['state'] for b in json.load(sys.stdin)['backends'] if b['name']=='$1'))"; }
ha_state() { curl -s "http://$HA:8405/stats;csv" |
  awk -F, -v s="$1" '$1=="apiserverbackend" && $2==s {print ($18 ~ /^UP/) ? "up" : "down"}'; }
state() { if [ "$1" = ha-balancer ]; then hb_state "$2"; else ha_state "$2"; fi; }
# spread: open connections per apiserver, "a/b/c".
spread() {
  if [ "$1" = ha-balancer ]; then
    curl -s "http://$HB:8404/stats?format=json" |
      python3 -c "import json,sys; print('/'.join(str(b['activeConnections']) for b in json.load(sys.stdin)['backends']))"
  else
    curl -s "http://$HA:8405/stats;csv" |
      awk -F, '$1=="apiserverbackend" && $2 ~ /^apiserver-/ {printf "%s%s", sep, $5; sep="/"} END {print ""}'
  fi
}
wait_state() { # proxy name state
  for _ in $(seq 1 600); do [ "$(state "$1" "$2")" = "$3" ] && return 0; sleep 0.05; done
  echo "$1 never saw $2 $3" >&2; return 1
}
wait_all_up() {
  for p in ha-balancer haproxy; do for n in apiserver-1 apiserver-2 apiserver-3; do wait_state $p $n up; done; done
}
wait_all_up
# SIGKILL apiserver i and reap it quietly (bash would report the kill).
kill_apiserver() { { kill -9 "${API_PID[$1]}" && wait "${API_PID[$1]}"; } 2>/dev/null || true; }

rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; }
rotate() { local r=$1; shift; local a=("$@") n=$#; for i in $(seq 0 $((n - 1))); do echo "${a[$(((i + r) % n))]}"; done; }
kv() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
TICK=$(getconf CLK_TCK)
cpu_of() { awk -v t="$TICK" '{print ($14+$15)/t}' "/proc/$1/stat"; }
now_ms() { date +%s%3N; }

# --- 1. throughput and connections/s --------------------------------------------------------------------
declare -A IPERF=([direct]=${EP[0]} [ha-balancer]=$HB [haproxy]=$HA)
declare -A ECHO=([direct]=${EP[0]} [ha-balancer]=$HB [haproxy]=$HA)
declare -A TPUT_PID=([ha-balancer]=$HB_IPERF [haproxy]=$HA_PID)
declare -A CONN_PID=([ha-balancer]=$HB_ECHO [haproxy]=$HA_PID)
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS: throughput, connections/s" >&2
  for t in $(rotate "$r" direct ha-balancer haproxy); do
    p=${TPUT_PID[$t]:-}
    c0=$([ -n "$p" ] && cpu_of "$p" || echo 0)
    bps=$(iperf3 -c "${IPERF[$t]}" -p 5201 -t "$SECS" -J 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
    rec tput_gbps "$t" "$(python3 -c "print($bps/1e9)")"
    [ -n "$p" ] && rec tput_cores "$t" "$(python3 -c "print(($(cpu_of "$p") - $c0) / $SECS)")"
    p=${CONN_PID[$t]:-}
    c0=$([ -n "$p" ] && cpu_of "$p" || echo 0)
    cps=$("$B" connrate "${ECHO[$t]}:7000" "$SECS" 32 | kv conn_per_s)
    rec conn_per_s "$t" "$cps"
    [ -n "$p" ] && rec conn_cpu_us "$t" "$(python3 -c "print(($(cpu_of "$p") - $c0) * 1e6 / ($cps * $SECS))")"
  done
done

# --- 2. failover under load -----------------------------------------------------------------------------
declare -A API_ADDR=([ha-balancer]=$HB [haproxy]=$HA)
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS: SIGKILL under load" >&2
  for t in $(rotate "$r" ha-balancer haproxy); do
    "$LOADER" requests "${API_ADDR[$t]}:6443" "$FAILOVER_SECS" 8 "$PKI" >"$OUT/failover.$t.$r.out" & load=$!
    sleep 3
    killed=$(now_ms); kill_apiserver 1
    wait_state "$t" apiserver-2 down
    rec detect_ms "$t" $(($(now_ms) - killed))
    wait "$load"
    rec failed "$t" "$(kv failed <"$OUT/failover.$t.$r.out")"
    rec requests "$t" "$(kv ok <"$OUT/failover.$t.$r.out")"
    start_apiserver 1
    wait_all_up
  done
done

# --- 3. spread after a restarted backend is back ----------------------------------------------------------
for t in ha-balancer haproxy; do
  echo "$t: $WATCHES watches, apiserver-2 killed and restarted, spread ${SPREAD_WAIT}s later" >&2
  "$LOADER" hold "${API_ADDR[$t]}:6443" "$WATCHES" $((SPREAD_WAIT + 60)) "$PKI" >"$OUT/hold.$t.out" 2>/dev/null & hold=$!; PIDS+=($hold)
  sleep 5
  rec spread_before "$t" "$(spread "$t")"
  kill_apiserver 1
  wait_state "$t" apiserver-2 down
  sleep 3
  rec spread_outage "$t" "$(spread "$t")"
  start_apiserver 1
  wait_all_up
  sleep "$SPREAD_WAIT"
  rec spread_after "$t" "$(spread "$t")"
  kill "$hold" 2>/dev/null || true
  wait "$hold" 2>/dev/null || true
  sleep 2
done

python3 - "$RES" "$ROUNDS" "$SPREAD_WAIT" "$WATCHES" <<'EOF'
import statistics, sys
from collections import defaultdict
path, rounds, wait, watches = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
v = defaultdict(list)
for line in open(path):
    k, t, x = line.rstrip("\n").split("\t")
    v[(k, t)].append(x)
def med(k, t):
    xs = [float(x) for x in v.get((k, t), []) if x]
    return statistics.median(xs) if xs else float("nan")
def total(k, t):
    return sum(float(x) for x in v.get((k, t), []) if x)
print(f"ha-balancer vs HAProxy (kubeadm recipe), {rounds} interleaved rounds, medians")
print(f"{'':28}{'direct':>12}{'ha-balancer':>14}{'haproxy':>12}")
rows = [("throughput, Gbit/s", "tput_gbps", "{:.2f}"), ("  proxy cores used", "tput_cores", "{:.2f}"),
        ("connections/s", "conn_per_s", "{:.0f}"), ("  proxy CPU µs/connection", "conn_cpu_us", "{:.1f}"),
        ("failover detection, ms", "detect_ms", "{:.0f}")]
for name, k, f in rows:
    cells = []
    for t in ("direct", "ha-balancer", "haproxy"):
        m = med(k, t)
        cells.append("-" if m != m else f.format(m))
    print(f"{name:28}{cells[0]:>12}{cells[1]:>14}{cells[2]:>12}")
for t in ("ha-balancer", "haproxy"):
    print(f"{t}: {total('failed', t):.0f} failed of {total('failed', t) + total('requests', t):.0f} requests "
          f"over {len(v[('failed', t)])} SIGKILLs; spread of {watches} watches: "
          f"before {v[('spread_before', t)][0]}, during the outage {v[('spread_outage', t)][0]}, "
          f"{wait} s after the restart {v[('spread_after', t)][0]}")
r = lambda k: med(k, "ha-balancer") / med(k, "haproxy")
print(f"ratios ha-balancer/haproxy: throughput {r('tput_gbps'):.2f}, connections/s {r('conn_per_s'):.2f}, "
      f"CPU per connection {r('conn_cpu_us'):.2f}")
EOF
