#!/usr/bin/env bash
# Benchmark proxy type 1: auth-proxy vs real `kubectl proxy`, in front of the same apiserver, on the
# same paths, with interleaved wrk runs (kubectl, auth-proxy, kubectl, auth-proxy, …) so that noise
# on a shared machine hits both alike. Not a test: it prints a Markdown table for docs/benchmarks.md.
#
#   bench/auth-proxy.sh                      # upstream: the bench_apiserver example (measures the proxies)
#   UPSTREAM=lab LAB_STATE=DIR bench/auth-proxy.sh   # upstream: a running lab (DIR/lab.json, DIR/kubeconfig)
#
# Knobs: DURATION (10s) CONNS (32) THREADS (2) ROUNDS (3) PODS (20, bench upstream only),
#        AP_ARGS (extra auth-proxy flags, e.g. --access-log=false).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
UPSTREAM=${UPSTREAM:-bench}

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi
command -v kubectl >/dev/null || { echo "kubectl is required" >&2; exit 1; }

cargo build -q --release -p proxylab-auth-proxy --bin auth-proxy --example bench_apiserver

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for_line() { # file prefix → rest of the first line starting with prefix
  for _ in $(seq 1 300); do
    if line=$(grep -m1 "^$2" "$1" 2>/dev/null); then echo "${line#"$2"}"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

case "$UPSTREAM" in
  bench)
    PODS=${PODS:-20} target/release/examples/bench_apiserver "$WORK/up" >"$WORK/up.out" 2>&1 &
    PIDS+=($!)
    UP=$(wait_for_line "$WORK/up.out" "serving on ")
    KC="$WORK/up/kubeconfig"
    TOKEN=bench-token
    ;;
  lab)
    : "${LAB_STATE:?set LAB_STATE to the lab state dir}"
    KC="$LAB_STATE/kubeconfig"
    UP=$(sed -n 's/.*"apiservers": *\["\([^"]*\)".*/\1/p' "$LAB_STATE/lab.json" | head -1)
    TOKEN=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' "$LAB_STATE/lab.json" | head -1)
    ;;
  *) echo "UPSTREAM must be bench or lab" >&2; exit 1 ;;
esac
PODPATH=/api/v1/namespaces/default/pods

# shellcheck disable=SC2086
target/release/auth-proxy --kubeconfig "$KC" -p 0 --admin-address "" ${AP_ARGS:-} >"$WORK/ap.out" 2>"$WORK/ap.err" &
PIDS+=($!)
AP=$(wait_for_line "$WORK/ap.out" "Starting to serve on ")
HOME_K="$WORK/khome"; mkdir -p "$HOME_K"
HOME="$HOME_K" kubectl proxy --kubeconfig "$KC" -p 0 >"$WORK/kp.out" 2>"$WORK/kp.err" &
PIDS+=($!)
KP=$(wait_for_line "$WORK/kp.out" "Starting to serve on ")

for a in "$AP" "$KP"; do
  for p in /version "$PODPATH"; do curl -fsS -o /dev/null "http://$a$p"; done
done

# wrk's "99%  1.23ms" → milliseconds
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v}'; }

run() { # base-url path [wrk args…] → "rps p99ms"
  local base=$1 path=$2; shift 2
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$base$path")
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errs" ] && echo "  warning ($base$path): $errs" >&2
  echo "$rps $p99"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "upstream: $UPSTREAM ($UP) · auth-proxy ${AP_ARGS:-(defaults)} · wrk -t$THREADS -c$CONNS -d$DURATION · $ROUNDS interleaved rounds · $(nproc) cores" >&2
printf '| path | direct (no proxy) req/s | kubectl proxy req/s | auth-proxy req/s | ratio | direct p99 ms | kubectl proxy p99 ms | auth-proxy p99 ms |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for path in /version "$PODPATH"; do
  : >"$WORK/k"; : >"$WORK/a"; : >"$WORK/d"
  for r in $(seq 1 "$ROUNDS"); do
    # The apiserver alone, with the same token: the ceiling on this machine.
    run "$UP" "$path" -H "Authorization: Bearer $TOKEN" >>"$WORK/d"
    run "http://$KP" "$path" >>"$WORK/k"
    run "http://$AP" "$path" >>"$WORK/a"
    echo "  round $r $path: direct $(tail -1 "$WORK/d") · kubectl $(tail -1 "$WORK/k") · auth-proxy $(tail -1 "$WORK/a")" >&2
  done
  drps=$(cut -d' ' -f1 "$WORK/d" | median); dp99=$(cut -d' ' -f2 "$WORK/d" | median)
  krps=$(cut -d' ' -f1 "$WORK/k" | median); arps=$(cut -d' ' -f1 "$WORK/a" | median)
  kp99=$(cut -d' ' -f2 "$WORK/k" | median); ap99=$(cut -d' ' -f2 "$WORK/a" | median)
  ratio=$(awk -v a="$arps" -v k="$krps" 'BEGIN {printf "%.2f×", a/k}')
  printf '| `%s` | %.0f | %.0f | %.0f | %s | %.2f | %.2f | %.2f |\n' "$path" "$drps" "$krps" "$arps" "$ratio" "$dp99" "$kp99" "$ap99"
done
