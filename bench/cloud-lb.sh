#!/usr/bin/env bash
# Benchmarks cloud-lb (proxy type 5) in a lab on loopback (127.94.0.0/16).
#
#   bench/cloud-lb.sh                 # ROUNDS=10 CMP_ROUNDS=3 SECS=5 CONNS=8
#
# 1. Time to serve: each round creates a Service (`metallb.io/loadBalancerIPs` pins its address,
#    so the poller knows where to connect before the status says so), then a Python loop connects
#    to ADDR:80 every 2 ms and sends an HTTP GET until an answer arrives; the Service is deleted
#    before the next round. Two times per round, both from the moment `kubectl apply` starts:
#    - apply_ms: until `kubectl apply` returned (the object is stored; mostly kubectl's start-up);
#    - first_ms: until the first HTTP answer through the lab's cloud-lb → NodePort → forwarder →
#      pod (the controller saw the Service, allocated, wrote the status, opened the listener, and
#      the nodes' forwarders already had the NodePort).
# 2. cloud-lb vs HAProxy on the same path: a release `cloud-lb` run beside the lab with a class of
#    its own serves one Service; HAProxy in tcp mode (bench/cloud-lb/haproxy.cfg) relays to the
#    same Service's NodePorts on both nodes, round-robin. wrk (8 connections, SECS s) asks the pods'
#    /hostname through each, in rotating order over CMP_ROUNDS rounds: new connections per second
#    (`Connection: close`, one request per connection) and requests per second over kept-alive
#    connections, with each proxy's CPU from /proc (µs per connection, µs per request). "direct"
#    goes to a node's NodePort: the lab's own ceiling (its forwarders and pods are the debug build).
# The lab is the debug `proxylab` binary unless PROXYLAB names another.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
ROUNDS=${ROUNDS:-10}
CMP_ROUNDS=${CMP_ROUNDS:-3}
SECS=${SECS:-5}
CONNS=${CONNS:-8}
OUT=${OUT:-$ROOT/target/bench-cloud-lb}
rm -rf "$OUT"; mkdir -p "$OUT"
RES="$OUT/results.tsv"
: >"$RES"

need_tools curl kubectl python3 haproxy wrk
( cd "$ROOT" && cargo build --release -q -p proxylab-cloud-lb --bin cloud-lb )
CLB="$ROOT/target/release/cloud-lb"
PROXYLAB=${PROXYLAB:-$ROOT/target/debug/proxylab}
[ -x "$PROXYLAB" ] || ( cd "$ROOT" && cargo build -q --bin proxylab )

sed 's/127\.0\./127.94./g' "$ROOT/lab/topology.yaml" >"$OUT/topology.yaml"
"$PROXYLAB" lab up --state-dir "$OUT/state" --topology "$OUT/topology.yaml" >"$OUT/lab.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 600); do [ -f "$OUT/state/lab.json" ] && break; sleep 0.1; done
[ -f "$OUT/state/lab.json" ] || { echo "the lab did not start; see $OUT/lab.log" >&2; exit 1; }
export KUBECONFIG="$OUT/state/kubeconfig"
kubectl wait --for=jsonpath='{.status.loadBalancer.ingress}' svc/web-lb >/dev/null

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
for r in $(seq 1 "$ROUNDS"); do
  ip=127.94.50.$((100 + r))
  t0=$(now_ms)
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: lbbench-$r
  annotations: {metallb.io/loadBalancerIPs: $ip}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
  t1=$(now_ms)
  t2=$(python3 - "$ip" <<'EOF'
import socket, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    try:
        s = socket.create_connection((sys.argv[1], 80), timeout=1)
        s.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if s.recv(12).startswith(b"HTTP/1.1 200"):
            print(time.time_ns() // 1000000)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.002)
sys.exit("no answer within 30 s")
EOF
)
  printf 'apply_ms\t%s\nfirst_ms\t%s\n' $((t1 - t0)) $((t2 - t0)) >>"$RES"
  echo "round $r/$ROUNDS: apply $((t1 - t0)) ms, first connection $((t2 - t0)) ms" >&2
  kubectl delete svc "lbbench-$r" >/dev/null
done

# --- 2. cloud-lb vs HAProxy -------------------------------------------------------------------------
CLB_IP=127.94.51.1   # the release cloud-lb's Service
HA_IP=127.94.52.1    # HAProxy
RUST_LOG=warn "$CLB" --kubeconfig "$KUBECONFIG" --class example.com/bench --pool bench=$CLB_IP \
  --state-file "$OUT/cloud-lb.json" --admin 127.94.0.1:10259 --instance bench >"$OUT/cloud-lb.log" 2>&1 & CLB_PID=$!; PIDS+=($!)
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: lbcmp}
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/bench
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
kubectl wait --for=jsonpath='{.status.loadBalancer.ingress}' svc/lbcmp >/dev/null
NP=$(kubectl get svc lbcmp -o jsonpath='{.spec.ports[0].nodePort}')
sed "s/@HA@/$HA_IP/; s/@NODE1@/127.94.20.1:$NP/; s/@NODE2@/127.94.20.2:$NP/" \
  "$ROOT/bench/cloud-lb/haproxy.cfg" >"$OUT/haproxy.cfg"
haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($!)
for a in $CLB_IP $HA_IP; do
  for _ in $(seq 1 100); do curl -sf "http://$a/hostname" >/dev/null && break; sleep 0.1; done
done

declare -A ADDR=([direct]=127.94.20.1:$NP [cloud-lb]=$CLB_IP:80 [haproxy]=$HA_IP:80)
declare -A PID=([cloud-lb]=$CLB_PID [haproxy]=$HA_PID)
TICK=$(getconf CLK_TCK)
cpu_of() { awk -v t="$TICK" '{print ($14+$15)/t}' "/proc/$1/stat"; }
rotate() { local r=$1; shift; local a=("$@") n=$#; for i in $(seq 0 $((n - 1))); do echo "${a[$(((i + r) % n))]}"; done; }
# wrk_run TARGET [wrk args]: prints "requests errors" of one run.
wrk_run() {
  local t=$1; shift
  wrk -t 2 -c "$CONNS" -d "${SECS}s" "$@" "http://${ADDR[$t]}/hostname" >"$OUT/wrk.last" 2>&1
  awk '/requests in/ {r=$1} /Socket errors/ {e=$4+$6+$8+$10} /Non-2xx/ {e+=$NF} END {print r, e+0}' "$OUT/wrk.last"
}
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$OUT/cmp.tsv"; }
: >"$OUT/cmp.tsv"
for r in $(seq 1 "$CMP_ROUNDS"); do
  echo "round $r/$CMP_ROUNDS: cloud-lb vs haproxy" >&2
  for t in $(rotate "$r" direct cloud-lb haproxy); do
    for mode in close keepalive; do
      args=(); [ $mode = close ] && args=(-H "Connection: close")
      p=${PID[$t]:-}; c0=$([ -n "$p" ] && cpu_of "$p" || echo 0)
      read -r n errs < <(wrk_run "$t" "${args[@]}")
      rec "${mode}_per_s" "$t" "$(python3 -c "print($n / $SECS)")"
      rec "${mode}_errors" "$t" "$errs"
      [ -n "$p" ] && rec "${mode}_cpu_us" "$t" "$(python3 -c "print(($(cpu_of "$p") - $c0) * 1e6 / $n)")"
    done
  done
done
kubectl delete svc lbcmp >/dev/null

python3 - "$RES" "$ROUNDS" "$OUT/cmp.tsv" "$CMP_ROUNDS" "$CONNS" <<'EOF'
import statistics, sys
from collections import defaultdict
v = defaultdict(list)
for line in open(sys.argv[1]):
    k, x = line.split()
    v[k].append(float(x))
print(f"cloud-lb: kubectl apply of a LoadBalancer Service → first answer through it, {sys.argv[2]} rounds")
for k, name in (("apply_ms", "kubectl apply returned"), ("first_ms", "first successful connection")):
    xs = v[k]
    print(f"  {name:30} median {statistics.median(xs):6.0f} ms   max {max(xs):6.0f} ms")
c = defaultdict(list)
for line in open(sys.argv[3]):
    k, t, x = line.rstrip("\n").split("\t")
    c[(k, t)].append(float(x))
def med(k, t):
    xs = c.get((k, t), [])
    return statistics.median(xs) if xs else float("nan")
print(f"\ncloud-lb vs HAProxy (tcp mode, same NodePorts), {sys.argv[4]} interleaved rounds, wrk -c {sys.argv[5]}, medians")
print(f"{'':34}{'direct':>10}{'cloud-lb':>10}{'haproxy':>10}")
for name, k, f in (("new connections/s", "close_per_s", "{:.0f}"), ("  proxy CPU µs/connection", "close_cpu_us", "{:.1f}"),
                   ("kept-alive requests/s", "keepalive_per_s", "{:.0f}"), ("  proxy CPU µs/request", "keepalive_cpu_us", "{:.1f}")):
    cells = [med(k, t) for t in ("direct", "cloud-lb", "haproxy")]
    print(f"{name:34}" + "".join(f"{('-' if x != x else f.format(x)):>10}" for x in cells))
errs = {t: sum(sum(c.get((m, t), [])) for m in ("close_errors", "keepalive_errors")) for t in ("direct", "cloud-lb", "haproxy")}
print("errors (socket or non-2xx), all runs:", ", ".join(f"{t} {int(e)}" for t, e in errs.items()))
r = lambda k: med(k, "cloud-lb") / med(k, "haproxy")
print(f"ratios cloud-lb/haproxy: connections/s {r('close_per_s'):.2f}, CPU per connection {r('close_cpu_us'):.2f}, "
      f"requests/s {r('keepalive_per_s'):.2f}, CPU per request {r('keepalive_cpu_us'):.2f}")
EOF
