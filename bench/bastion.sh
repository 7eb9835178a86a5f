#!/usr/bin/env bash
# Benchmark proxy type 2: the bastion's service proxy vs nginx `proxy_pass` to the same pods, with
# interleaved wrk runs (direct, nginx, bastion, direct, nginx, bastion, …) so that noise on a shared
# machine hits all alike. Not a test: it prints a Markdown table for docs/benchmarks.md.
#
#   bench/bastion.sh                         # starts its own lab (release build) on 127.$OCTET.x.x
#   bench/bastion.sh --layouts "pinned"      # any list of the layouts below
#   LAB_STATE=DIR bench/bastion.sh           # use a running lab instead (DIR/lab.json, DIR/kubeconfig)
#
# What is compared, on the same request (`GET …/services/web:http/proxy/hostname`, a 5-byte answer
# from one of the lab's three `web` echo pods):
#   direct   wrk straight at one pod (plain HTTP): the ceiling of the pods on this machine;
#   nginx    HTTPS (TLS 1.3, the lab's apiserver certificate) → `proxy_pass` to an upstream block of
#            the three pod addresses, `random` balancing (as the bastion's default), keepalive
#            connections to the pods, its access log on (one line per request to a file, unbuffered,
#            nginx's default), as the bastion logs a hop line per request (to a file here too);
#   bastion  the standalone `bastion` binary, HTTPS with the same certificate, watching the lab
#            through its kubeconfig: bearer-token authentication, authorization, resolution from
#            its ClusterView, the destination check, forwarding through core::http (pooled
#            connections), a hop record per request.
# The bastion does more per request than nginx (authentication, authorization, Kubernetes
# resolution, hop records); nginx is the bar because it is what a user would put in front of pods.
#
# Layouts, as bench/auth-proxy.sh ("shared pinned" by default):
#   shared  everything (wrk, the lab with its pods, the proxy) on all cores; nginx runs one worker
#           per core, the bastion one runtime thread per core;
#   pinned  wrk (one thread) and the lab on CPU 0, the proxy under test alone on CPU 1 (taskset;
#           nginx one worker, the bastion's runtime sized by the affinity mask): one core's worth.
#           When the proxy is cheap, CPU 0 saturates first and the req/s ratio understates it;
#           the CPU-per-request column does not.
# Besides req/s and p99 it prints each proxy's CPU time per request (from /proc/PID/stat of every
# process of the proxy, around each run): the efficiency figure that does not depend on how the
# cores are shared — "req/s per core" is its inverse.
#
# Knobs: DURATION (10s) CONNS (32) THREADS (2, shared layout) ROUNDS (3) OCTET (77: own lab only),
#        BIN_DIR (binaries already built there, e.g. target/debug for a smoke run: no build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
OCTET=${OCTET:-77}
LAYOUTS=${LAYOUTS:-shared pinned}
if [ "$(nproc)" -lt 2 ]; then LAYOUTS=shared; fi
while (($#)); do
  case "$1" in
    --layouts) LAYOUTS=${2:?--layouts needs a list, e.g. \"shared pinned\"}; shift ;;
    --layouts=*) LAYOUTS=${1#--layouts=} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for layout in $LAYOUTS; do
  case "$layout" in
    shared) ;;
    pinned) (($(nproc) >= 2)) || { echo "the pinned layout needs 2 CPUs" >&2; exit 2; } ;;
    *) echo "unknown layout $layout (shared, pinned)" >&2; exit 2 ;;
  esac
done

need_tools wrk nginx curl
command -v kubectl >/dev/null || { echo "kubectl is required" >&2; exit 1; }

if [ -z "${BIN_DIR:-}" ]; then
  cargo build -q --release -p proxylab --bin proxylab -p proxylab-bastion --bin bastion
  BIN_DIR=target/release
fi

WORK=$(mktemp -d)
trap 'cleanup; rm -rf "$WORK"' EXIT

wait_for_line() { # file prefix → rest of the first line starting with prefix
  for _ in $(seq 1 600); do
    if line=$(grep -m1 "^$2" "$1" 2>/dev/null); then echo "${line#"$2"}"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}


# start_lab PIN: our own lab (unless LAB_STATE names one), pinned with PIN (a taskset prefix or "").
start_lab() {
  if [ -n "${LAB_STATE:-}" ]; then STATE=$LAB_STATE; LAB_PID=""; return; fi
  STATE="$WORK/lab"
  sed "s/127\.0\./127.$OCTET./g" lab/topology.yaml >"$WORK/topology.yaml"
  # shellcheck disable=SC2086
  RUST_LOG=warn $1 "$BIN_DIR/proxylab" lab up --state-dir "$STATE" --topology "$WORK/topology.yaml" \
    >"$WORK/lab.out" 2>"$WORK/lab.err" &
  PIDS+=($!); LAB_PID=$!
  for _ in $(seq 1 600); do [ -s "$STATE/lab.json" ] && return; sleep 0.1; done
  echo "the lab did not become ready; its log:" >&2; tail -20 "$WORK/lab.err" >&2; exit 1
}

# start_proxies PIN WORKERS: nginx and the bastion in front of the lab's web pods.
start_proxies() {
  local pin=$1 workers=$2 pki="$STATE/pki" ips port
  ips=$(kubectl --kubeconfig "$STATE/kubeconfig" get endpointslices -n default \
    -l kubernetes.io/service-name=web -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]}{"\n"}{end}')
  port=8080
  [ "$(echo "$ips" | grep -c .)" -ge 1 ] || { echo "no web endpoints in the lab" >&2; exit 1; }
  POD="http://$(echo "$ips" | head -1):$port"
  PODCIDR=$(echo "$ips" | head -1 | awk -F. '{print $1"."$2"."$3".0/24"}')
  # nginx: the same certificate, the same three pods, random choice, pooled upstream connections.
  mkdir -p "$WORK/nginx"
  {
    echo "worker_processes $workers; daemon off; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log $WORK/nginx/access.log;"
    echo "  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;"
    echo "  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;"
    echo "  upstream web { random;"
    for ip in $ips; do echo "    server $ip:$port;"; done
    echo "    keepalive 64; }"
    echo "  server { listen 127.0.0.1:0 ssl; ssl_protocols TLSv1.3;"
    echo "    ssl_certificate $pki/apiserver.crt; ssl_certificate_key $pki/apiserver.key;"
    echo "    location /api/v1/namespaces/default/services/web:http/proxy/ {"
    echo "      proxy_pass http://web/; proxy_http_version 1.1; proxy_set_header Connection \"\";"
    echo "      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }"
  } >"$WORK/nginx/nginx.conf"
  # nginx cannot listen on port 0: take a free port from the kernel first.
  NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  sed -i "s/127.0.0.1:0 ssl/127.0.0.1:$NGINX_PORT ssl/" "$WORK/nginx/nginx.conf"
  # shellcheck disable=SC2086
  $pin nginx -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/out" 2>&1 &
  PIDS+=($!); NGINX_PID=$!
  NG="https://127.0.0.1:$NGINX_PORT"
  echo "bench-token,bench,1" >"$WORK/tokens.csv"
  # shellcheck disable=SC2086
  $pin "$BIN_DIR/bastion" --kubeconfig "$STATE/kubeconfig" --listen 127.0.0.1:0 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --token-auth-file "$WORK/tokens.csv" --allowed-networks "$PODCIDR" --admin-address "" \
    >"$WORK/bastion.out" 2>"$WORK/bastion.err" &
  PIDS+=($!); BASTION_PID=$!
  BA="https://$(wait_for_line "$WORK/bastion.out" "Serving the apiserver proxy on https://")"
  local path=/api/v1/namespaces/default/services/web:http/proxy/hostname
  for _ in $(seq 1 100); do
    curl -fsSk -o /dev/null -H "Authorization: Bearer bench-token" "$BA$path" 2>/dev/null \
      && curl -fsSk -o /dev/null "$NG$path" 2>/dev/null && return
    sleep 0.1
  done
  echo "the proxies did not answer; bastion: $(cat "$WORK/bastion.err"); nginx: $(cat "$WORK/nginx/error.log")" >&2
  exit 1
}

# wrk's "99%  1.23ms" → milliseconds
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v}'; }

# cpu_ticks PID: user+system ticks of PID and its children processes (nginx's workers).
cpu_ticks() {
  [ -n "$1" ] || { echo 0; return; }
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

run() { # url pid [wrk args…] → "rps p99ms cpu-us-per-request"
  local url=$1 pid=$2; shift 2
  local before after out rps reqs p99 cpu errs
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  out=$($LOAD_PIN wrk -t"$WRK_THREADS" -c"${CONNS:-32}" -d"$DURATION" --latency "$@" "$url")
  after=$(cpu_ticks "$pid")
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  cpu=$(awk -v d=$((after - before)) -v t="$(getconf CLK_TCK)" -v r="$reqs" 'BEGIN {printf "%.1f", (r > 0 ? d / t * 1e6 / r : 0)}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errs" ] && echo "  warning ($url): $errs" >&2
  echo "$rps $p99 $cpu"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

SVCPATH=/api/v1/namespaces/default/services/web:http/proxy/hostname
echo "bastion vs nginx · wrk -d$DURATION -c${CONNS:-32} · $ROUNDS interleaved rounds · $(nproc) cores · layouts: $LAYOUTS" >&2
printf '| layout | direct (one pod) req/s | nginx req/s | bastion req/s | ratio | direct p99 ms | nginx p99 ms | bastion p99 ms | nginx CPU µs/req | bastion CPU µs/req | CPU ratio |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for layout in $LAYOUTS; do
  case "$layout" in
    shared) LOAD_PIN=""; PROXY_PIN=""; WRK_THREADS=$THREADS; WORKERS=$(nproc) ;;
    pinned) LOAD_PIN="taskset -c 0"; PROXY_PIN="taskset -c 1"; WRK_THREADS=1; WORKERS=1 ;;
  esac
  start_lab "$LOAD_PIN"
  start_proxies "$PROXY_PIN" "$WORKERS"
  : >"$WORK/d"; : >"$WORK/n"; : >"$WORK/b"
  for r in $(seq 1 "$ROUNDS"); do
    run "$POD/hostname" "" >>"$WORK/d"
    run "$NG$SVCPATH" "$NGINX_PID" >>"$WORK/n"
    run "$BA$SVCPATH" "$BASTION_PID" -H "Authorization: Bearer bench-token" >>"$WORK/b"
    echo "  $layout round $r: direct $(tail -1 "$WORK/d") · nginx $(tail -1 "$WORK/n") · bastion $(tail -1 "$WORK/b")  (req/s p99-ms cpu-µs/req)" >&2
  done
  col() { cut -d' ' -f"$2" "$WORK/$1" | median; }
  drps=$(col d 1); dp99=$(col d 2)
  nrps=$(col n 1); np99=$(col n 2); ncpu=$(col n 3)
  brps=$(col b 1); bp99=$(col b 2); bcpu=$(col b 3)
  ratio=$(awk -v b="$brps" -v n="$nrps" 'BEGIN {printf "%.2f×", b/n}')
  cratio=$(awk -v b="$bcpu" -v n="$ncpu" 'BEGIN {printf "%.2f×", (b > 0 ? n/b : 0)}')
  printf '| %s | %.0f | %.0f | %.0f | %s | %.2f | %.2f | %.2f | %.1f | %.1f | %s |\n' \
    "$layout" "$drps" "$nrps" "$brps" "$ratio" "$dp99" "$np99" "$bp99" "$ncpu" "$bcpu" "$cratio"
  cleanup
  PIDS=()
done
