#!/usr/bin/env bash
# Benchmarks the forwarder (proxy type 3, kube-proxy as an L4 proxy) against its peers on loopback:
# HAProxy (mode tcp, splice-auto), socat, and a direct connection (the physical limit).
#
#   bench/forwarder.sh                      # ROUNDS=3 SECS=5 IDLE=10000 by default
#   ROUNDS=5 SECS=10 bench/forwarder.sh
#   bench/forwarder.sh --apart              # force the apart layouts (machines with ≥ 7 usable CPUs)
#   bench/forwarder.sh --layouts "apart1"   # any list of the layouts below
#
# Layouts, chosen by the CPU count unless --layouts/--apart/--small (or LAYOUTS=…) say otherwise:
#   on fewer than 8 CPUs, "shared": every process wherever the scheduler puts it (load generator,
#           backends and proxies compete for the same cores; CPU per connection is the fair figure);
#   on 8 CPUs or more, "apart1 apart2": load generator, backends and proxy on disjoint cores —
#   apart1  the clients (iperf3 -c, l4bench) on 4 cores, the backends (iperf3 -s, echo) on a 5th,
#           the proxies under test (forwarder, HAProxy, socat) on a 6th: each proxy's capacity on one
#           core (the forwarder sizes its serving threads and HAProxy its nbthread by the affinity mask);
#   apart2  the same with the proxies on two cores (the 6th and a 7th): how each proxy scales.
# Each layout is a whole run of its own (servers restarted under the new pinning), results under
# $OUT/<layout>/.
#
# Measures, interleaved (every round runs every target, in rotating order, so drift and noise from
# other work on the machine hit all targets alike): iperf3 throughput with 1 and 4 streams, added
# latency of small request/response exchanges, new connections per second, UDP request/response
# packets per second (vs socat; HAProxy has no UDP), and RSS with IDLE idle relayed connections.
# Prints medians and the ratios the issue's goals are stated in. Everything listens on 127.90.0.0/16.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
IDLE=${IDLE:-10000}
OUT=${OUT:-$ROOT/target/bench-forwarder}

LAYOUTS=${LAYOUTS:-$(default_layouts shared "apart1 apart2")}
while [ $# -gt 0 ]; do
  case "$1" in
    --apart) LAYOUTS="apart1 apart2" ;;
    --small) LAYOUTS=shared ;;
    --layouts) LAYOUTS=${2:?--layouts needs a list, e.g. \"apart1 apart2\"}; shift ;;
    --layouts=*) LAYOUTS=${1#--layouts=} ;;
    *) echo "unknown argument $1 (--apart, --small, --layouts LIST)" >&2; exit 2 ;;
  esac
  shift
done
for layout in $LAYOUTS; do
  case "$layout" in
    shared) ;;
    apart1|apart2) apart_cpus || exit 2 ;;
    *) echo "unknown layout $layout (shared, apart1, apart2)" >&2; exit 2 ;;
  esac
done
# Several layouts: one whole run per layout, each in a child of this script.
if [ "$(wc -w <<<"$LAYOUTS")" -gt 1 ]; then
  for layout in $LAYOUTS; do
    echo "== layout $layout" >&2
    OUT="$OUT/$layout" LAYOUTS=$layout bash "$0"
  done
  exit 0
fi
LAYOUT=$LAYOUTS
# Command prefixes that pin each role (empty in the shared layout).
LOAD="" UP="" PX=""
case "$LAYOUT" in
  apart1) LOAD="taskset -c $LOAD_CPUS" UP="taskset -c $UP_CPUS" PX="taskset -c $PROXY1_CPUS" ;;
  apart2) LOAD="taskset -c $LOAD_CPUS" UP="taskset -c $UP_CPUS" PX="taskset -c $PROXY2_CPUS" ;;
esac
echo "layout $LAYOUT${LOAD:+ (clients on $LOAD_CPUS, backends on $UP_CPUS, proxies on ${PX#taskset -c })}" >&2
mkdir -p "$OUT"
RES="$OUT/results.tsv"
: >"$RES"

EP=127.90.0.1   # the endpoint (iperf3 server, echo servers)
FW=127.90.1.10  # the forwarder's ClusterIP
HA=127.90.2.10  # HAProxy
SO=127.90.3.10  # socat

# --- peers, installed from Debian packages when missing ------------------------------------------
need_tools haproxy socat iperf3

# A relaying proxy holds two descriptors per connection; the idle test needs tens of thousands.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
# Each proxy holds two descriptors per relayed connection: with a low hard limit (containers) measure
# as many idle connections as fit and say so; the per-connection cost is printed too.
MAXCONN=$(((NOFILE - 2000) / 2))
if ((IDLE > MAXCONN)); then
  echo "open-file limit $NOFILE: measuring $MAXCONN idle connections instead of $IDLE" >&2
  IDLE=$MAXCONN
fi

build_l4


wait_port() { # host port
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1:$2" >&2; exit 1
}

# --- servers --------------------------------------------------------------------------------------
$UP iperf3 -s -B "$EP" -p 5201 >/dev/null 2>&1 & PIDS+=($!)
$UP "$B" echo-tcp "$EP:7000" & PIDS+=($!)
$UP "$B" echo-udp "$EP:7001" & PIDS+=($!)

sed "s/@EP@/$EP/g; s/@FW@/$FW/g" "$ROOT/bench/forwarder/cluster.yaml" >"$OUT/cluster.yaml"
# Hop records are still kept (ring buffer, metrics) but not printed per connection, as HAProxy here
# logs only errors.
RUST_LOG=${RUST_LOG:-info,hop=warn} $PX "$FWD" --config "$OUT/cluster.yaml" --healthz-bind-address "" --admin-address "" --udp-timeout 60s \
  >"$OUT/forwarder.log" 2>&1 & FWD_PID=$!; PIDS+=($FWD_PID)

sed "s/@EP@/$EP/g; s/@HA@/$HA/g; s/@MAXCONN@/$MAXCONN/g" "$ROOT/bench/forwarder/haproxy.cfg" >"$OUT/haproxy.cfg"
$PX haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($HA_PID)

$PX socat TCP-LISTEN:5201,bind=$SO,fork,reuseaddr TCP:$EP:5201 & PIDS+=($!)
$PX socat TCP-LISTEN:7000,bind=$SO,fork,reuseaddr,nodelay,backlog=4096 TCP:$EP:7000,nodelay & PIDS+=($!)
$PX socat -T 10 UDP4-LISTEN:7001,bind=$SO,fork,reuseaddr UDP4:$EP:7001 & PIDS+=($!)

for h in $EP $FW $HA $SO; do wait_port "$h" 5201; wait_port "$h" 7000; done

declare -A ADDR=([direct]=$EP [forwarder]=$FW [haproxy]=$HA [socat]=$SO)
TCP_TARGETS=(direct forwarder haproxy socat)
UDP_TARGETS=(direct forwarder socat)

rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; }
rotate() { # round list...: prints the list rotated by round
  local r=$1; shift; local a=("$@") n=$#; for i in $(seq 0 $((n - 1))); do echo "${a[$(((i + r) % n))]}"; done
}
iperf_bps() { # addr streams
  $LOAD iperf3 -c "$1" -p 5201 -t "$SECS" -P "$2" -J 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
}
kv() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
# CPU time (user + system) a proxy process has used so far, in seconds; 0 for direct and socat
# (socat forks a process per connection, which /proc of the listener does not count).
TICK=$(getconf CLK_TCK)
proxy_pid() { case "$1" in forwarder) echo "$FWD_PID" ;; haproxy) echo "$HA_PID" ;; *) echo "" ;; esac; }
cpu_s() { local p; p=$(proxy_pid "$1"); [ -n "$p" ] && awk -v t="$TICK" '{print ($14+$15)/t}' "/proc/$p/stat" || echo 0; }

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for t in $(rotate "$r" "${TCP_TARGETS[@]}"); do
    a=${ADDR[$t]}
    c0=$(cpu_s "$t")
    rec tput1_gbps "$t" "$(python3 -c "print($(iperf_bps "$a" 1)/1e9)")"
    [ -n "$(proxy_pid "$t")" ] && rec tput1_cores "$t" "$(python3 -c "print(($(cpu_s "$t") - $c0) / $SECS)")"
    rec tput4_gbps "$t" "$(python3 -c "print($(iperf_bps "$a" 4)/1e9)")"
    lat=$($LOAD "$B" latency "$a:7000" 20000 64)
    rec p50_us "$t" "$(echo "$lat" | kv p50_us)"
    rec p99_us "$t" "$(echo "$lat" | kv p99_us)"
    c0=$(cpu_s "$t")
    cps=$($LOAD "$B" connrate "$a:7000" "$SECS" 32 | kv conn_per_s)
    rec conn_per_s "$t" "$cps"
    [ -n "$(proxy_pid "$t")" ] && rec conn_cpu_us "$t" "$(python3 -c "print(($(cpu_s "$t") - $c0) * 1e6 / ($cps * $SECS))")"
  done
  for t in $(rotate "$r" "${UDP_TARGETS[@]}"); do
    rec udp_pps "$t" "$($LOAD "$B" udp-pps "${ADDR[$t]}:7001" "$SECS" 16 | kv udp_pps)"
  done
done

# --- memory with IDLE idle relayed connections ----------------------------------------------------
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
for t in forwarder haproxy; do
  pid=$FWD_PID; [ "$t" = haproxy ] && pid=$HA_PID
  before=$(rss_kib "$pid")
  # Children of a -db haproxy: the worker is the process itself in -db mode.
  fifo="$OUT/idle.$t.fifo"; rm -f "$fifo"; mkfifo "$fifo"
  $LOAD "$B" idle "${ADDR[$t]}:7000" "$IDLE" <"$fifo" >"$OUT/idle.$t.out" & idle_pid=$!; PIDS+=($idle_pid)
  exec 9>"$fifo"
  for _ in $(seq 1 600); do grep -q idle_connections "$OUT/idle.$t.out" 2>/dev/null && break; sleep 0.2; done
  after=$(rss_kib "$pid")
  exec 9>&-
  wait "$idle_pid" || true
  rec rss_before_mib "$t" "$(python3 -c "print($before/1024)")"
  rec rss_idle_mib "$t" "$(python3 -c "print($after/1024)")"
done

echo "layout: $LAYOUT" >&2
python3 "$ROOT/bench/forwarder/summary.py" "$RES" "$IDLE"
