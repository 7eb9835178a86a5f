#!/usr/bin/env bash
# The HA balancer's http mode against HAProxy in http mode, both terminating TLS in front of the
# same two `proxylab apiserver` processes (requestheader authentication on), on loopback
# (127.93.0.0/16). Both do the same job: verify an optional client certificate against the cluster
# CA, remove the client's X-Remote-* headers, add X-Remote-User/X-Remote-Group from the certificate,
# and forward over verified TLS presenting the front-proxy client certificate.
#
#   bench/ha-balancer-http.sh                 # ROUNDS=3 SECS=5 CONNS=16
#
# Measured, interleaved (each round runs both, in rotating order): kept-alive HTTPS requests per
# second with wrk (GET /version, anonymous: wrk has no client certificates, so this is the
# token/anonymous path; HTTP/1.1) and each proxy's CPU per request from /proc. The apiservers are
# the debug `proxylab` binary (PROXYLAB names another): they are the ceiling of the request rate,
# the same for both, so the comparison that means something is CPU per request.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
CONNS=${CONNS:-16}
OUT=${OUT:-$ROOT/target/bench-ha-balancer-http}
mkdir -p "$OUT"
RES="$OUT/results.tsv"
: >"$RES"

need_tools haproxy wrk curl
( cd "$ROOT" && cargo build --release -q -p proxylab-ha-balancer --bin ha-balancer )
HAB="$ROOT/target/release/ha-balancer"
PROXYLAB=${PROXYLAB:-$ROOT/target/debug/proxylab}
[ -x "$PROXYLAB" ] || ( cd "$ROOT" && cargo build -q --bin proxylab )

API=(127.93.10.1 127.93.10.2)
HB=127.93.1.10   # ha-balancer :6443, admin :8404
HA=127.93.2.10   # HAProxy :6443

wait_port() { # host port
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1:$2" >&2; exit 1
}

PKI="$OUT/pki"
rm -rf "$PKI"
"$PROXYLAB" pki --dir "$PKI" --apiserver-ip "${API[0]}" --apiserver-ip "${API[1]}" \
  --apiserver-ip $HB --apiserver-ip $HA >/dev/null
for i in 0 1; do
  "$PROXYLAB" apiserver --bind-address="${API[$i]}" --secure-port=6443 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client --service-cluster-ip-range=127.93.40.0/24 \
    >>"$OUT/apiserver-$((i + 1)).log" 2>&1 &
  PIDS+=($!)
  wait_port "${API[$i]}" 6443
done

export RUST_LOG=${RUST_LOG:-info,hop=warn}
"$HAB" --mode http --listen $HB:6443 --admin-address $HB:8404 --ca-file "$PKI/ca.crt" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --backend apiserver-1=${API[0]}:6443 --backend apiserver-2=${API[1]}:6443 \
  >"$OUT/ha-balancer.log" 2>&1 & HB_PID=$!; PIDS+=($!)

cat "$PKI/apiserver.crt" "$PKI/apiserver.key" >"$OUT/serving.pem"
cat "$PKI/front-proxy-client.crt" "$PKI/front-proxy-client.key" >"$OUT/front-proxy.pem"
cat >"$OUT/haproxy.cfg" <<EOF
# HAProxy doing what ha-balancer's http mode does (see the script's head).
global
    log stdout format raw local0 err
    maxconn 4000
defaults
    mode http
    log global
    timeout connect 5s
    timeout client 35s
    timeout server 35s
    timeout http-keep-alive 10s
frontend apiserver
    bind $HA:6443 ssl crt $OUT/serving.pem ca-file $PKI/ca.crt verify optional alpn h2,http/1.1
    http-request del-header X-Remote-User
    http-request del-header X-Remote-Group
    http-request del-header X-Remote-Extra-.* -m reg
    http-request del-header Authorization if { ssl_c_used } { ssl_c_verify 0 }
    http-request set-header X-Remote-User %[ssl_c_s_dn(cn)] if { ssl_c_used } { ssl_c_verify 0 }
    default_backend apiservers
backend apiservers
    balance roundrobin
    option httpchk GET /readyz
    server apiserver-1 ${API[0]}:6443 check check-ssl ssl verify required ca-file $PKI/ca.crt crt $OUT/front-proxy.pem alpn h2,http/1.1
    server apiserver-2 ${API[1]}:6443 check check-ssl ssl verify required ca-file $PKI/ca.crt crt $OUT/front-proxy.pem alpn h2,http/1.1
EOF
haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($!)
wait_port $HB 6443
wait_port $HA 6443
# Both answer through to an apiserver before measuring.
for a in $HB $HA; do
  for _ in $(seq 1 100); do curl -skf "https://$a:6443/version" >/dev/null && break; sleep 0.2; done
  curl -skf "https://$a:6443/version" >/dev/null || { echo "$a never answered" >&2; exit 1; }
done

TICK=$(getconf CLK_TCK)
cpu_of() { awk -v t="$TICK" '{print ($14+$15)/t}' "/proc/$1/stat"; }
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; }
rotate() { local r=$1; shift; local a=("$@") n=$#; for i in $(seq 0 $((n - 1))); do echo "${a[$(((i + r) % n))]}"; done; }
declare -A ADDR=([ha-balancer]=$HB [haproxy]=$HA)
declare -A PID=([ha-balancer]=$HB_PID [haproxy]=$HA_PID)

for r in $(seq 1 "$ROUNDS"); do
  for t in $(rotate "$r" ha-balancer haproxy); do
    c0=$(cpu_of "${PID[$t]}")
    rps=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "https://${ADDR[$t]}:6443/version" | awk '/Requests\/sec/ {print $2}')
    c1=$(cpu_of "${PID[$t]}")
    rec rps "$t" "$rps"
    rec cpu_us "$t" "$(python3 -c "print(($c1 - $c0) * 1e6 / ($rps * $SECS))")"
    echo "round $r $t: $rps req/s" >&2
  done
done

python3 - "$RES" <<'PY'
import statistics, sys, collections
v = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, t, x = line.split("\t"); v[(k, t)].append(float(x))
med = lambda k, t: statistics.median(v[(k, t)])
print(f"{'':30}{'ha-balancer':>14}{'haproxy':>12}")
print(f"{'requests/s (kept alive)':30}{med('rps','ha-balancer'):>14.0f}{med('rps','haproxy'):>12.0f}")
print(f"{'  proxy CPU µs/request':30}{med('cpu_us','ha-balancer'):>14.1f}{med('cpu_us','haproxy'):>12.1f}")
print(f"ratio ha-balancer/haproxy CPU per request: {med('cpu_us','ha-balancer') / med('cpu_us','haproxy'):.2f}")
PY
