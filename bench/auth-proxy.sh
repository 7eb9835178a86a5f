#!/usr/bin/env bash
# Benchmark proxy type 1: auth-proxy vs real `kubectl proxy`, in front of the same apiserver, on the
# same paths, with interleaved wrk runs (kubectl, auth-proxy, kubectl, auth-proxy, …) so that noise
# on a shared machine hits both alike. Not a test: it prints a Markdown table for docs/benchmarks.md.
#
#   bench/auth-proxy.sh                      # upstream: the bench_apiserver example (measures the proxies)
#   bench/auth-proxy.sh --apart              # force the apart layouts (machines with ≥ 7 usable CPUs)
#   bench/auth-proxy.sh --layouts "pinned"   # any list of the layouts below
#   UPSTREAM=lab LAB_STATE=DIR bench/auth-proxy.sh   # upstream: a running lab (DIR/lab.json, DIR/kubeconfig)
#
# Layouts, chosen by the CPU count unless --layouts/--apart/--small (or LAYOUTS=…) say otherwise:
#   on fewer than 8 CPUs, "shared pinned":
#   shared  everything (wrk, upstream, both proxies) on all cores, as a user would run it;
#   pinned  wrk (one thread) and the upstream on CPU 0, the proxy under test alone on CPU 1
#           (taskset): the proxy's capacity on one core, with the load generator kept off its core
#           (needs 2 CPUs). When the proxy is cheap, CPU 0 saturates first and the req/s ratio
#           understates it; the CPU-per-request column does not.
#   on 8 CPUs or more, "apart1 apart2": load generator, upstream and proxy on disjoint cores —
#   apart1  wrk (4 threads) on 4 cores, the upstream on a 5th, the proxy under test alone on a 6th;
#   apart2  the same with the proxy on two cores (the 6th and a 7th): how each proxy scales.
#           Go's runtime and auth-proxy's --threads both follow the affinity mask (1 or 2 threads).
# Besides req/s and p99 it prints each proxy's CPU time per request (from /proc/PID/stat around
# each run): the efficiency figure that does not depend on how the cores are shared.
#
# Knobs: DURATION (10s) CONNS (32) THREADS (2, shared layout) ROUNDS (3)
#        PODS (20, bench upstream only), AP_ARGS (extra auth-proxy flags, e.g. --access-log=false).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
UPSTREAM=${UPSTREAM:-bench}
SMALL="shared pinned"
if [ "$(nproc)" -lt 2 ]; then SMALL=shared; fi
LAYOUTS=${LAYOUTS:-$(default_layouts "$SMALL" "apart1 apart2")}
while (($#)); do
  case "$1" in
    --apart) LAYOUTS="apart1 apart2" ;;
    --small) LAYOUTS=$SMALL ;;
    --layouts) LAYOUTS=${2:?--layouts needs a list, e.g. \"apart1 apart2\"}; shift ;;
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
    apart1|apart2) apart_cpus || exit 2 ;;
    *) echo "unknown layout $layout (shared, pinned, apart1, apart2)" >&2; exit 2 ;;
  esac
done

need_tools wrk
command -v kubectl >/dev/null || { echo "kubectl is required" >&2; exit 1; }

cargo build -q --release -p proxylab-auth-proxy --bin auth-proxy --example bench_apiserver

WORK=$(mktemp -d)
trap 'cleanup; rm -rf "$WORK"' EXIT

wait_for_line() { # file prefix → rest of the first line starting with prefix
  for _ in $(seq 1 300); do
    if line=$(grep -m1 "^$2" "$1" 2>/dev/null); then echo "${line#"$2"}"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

# start_all LAYOUT: the upstream (bench only) and both proxies, pinned or not.
start_all() {
  local layout=$1 load="" up="" proxy=""
  WRK_THREADS=$THREADS
  WRK_CONNS=${CONNS:-32}
  case "$layout" in
    # wrk has one core (shared with the upstream): one wrk thread, not two taking turns.
    pinned) load="taskset -c 0"; up=$load; proxy="taskset -c 1"; WRK_THREADS=1 ;;
    apart1|apart2)
      load="taskset -c $LOAD_CPUS"; up="taskset -c $UP_CPUS"; WRK_THREADS=4
      if [ "$layout" = apart1 ]; then proxy="taskset -c $PROXY1_CPUS"; else proxy="taskset -c $PROXY2_CPUS"; fi
      ;;
  esac
  LOAD_PIN=$load
  case "$UPSTREAM" in
    bench)
      # shellcheck disable=SC2086
      PODS=${PODS:-20} $up target/release/examples/bench_apiserver "$WORK/up-$layout" >"$WORK/up.out" 2>&1 &
      PIDS+=($!); UP_PID=$!
      UP=$(wait_for_line "$WORK/up.out" "serving on ")
      KC="$WORK/up-$layout/kubeconfig"
      TOKEN=bench-token
      ;;
    lab)
      : "${LAB_STATE:?set LAB_STATE to the lab state dir}"
      KC="$LAB_STATE/kubeconfig"
      UP=$(sed -n 's/.*"apiservers": *\["\([^"]*\)".*/\1/p' "$LAB_STATE/lab.json" | head -1)
      TOKEN=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' "$LAB_STATE/lab.json" | head -1)
      UP_PID=""
      ;;
    *) echo "UPSTREAM must be bench or lab" >&2; exit 1 ;;
  esac
  # shellcheck disable=SC2086
  $proxy target/release/auth-proxy --kubeconfig "$KC" -p 0 --admin-address "" ${AP_ARGS:-} >"$WORK/ap.out" 2>"$WORK/ap.err" &
  PIDS+=($!); AP_PID=$!
  AP=$(wait_for_line "$WORK/ap.out" "Starting to serve on ")
  HOME_K="$WORK/khome"; mkdir -p "$HOME_K"
  # shellcheck disable=SC2086
  HOME="$HOME_K" $proxy kubectl proxy --kubeconfig "$KC" -p 0 >"$WORK/kp.out" 2>"$WORK/kp.err" &
  PIDS+=($!)
  KP=$(wait_for_line "$WORK/kp.out" "Starting to serve on ")
  # kubectl may be a version dispatcher that execs the real binary: find the process that listens.
  KP_PID=$(ss -ltnpH "sport = :${KP##*:}" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
  for a in "$AP" "$KP"; do
    for p in /version "$PODPATH"; do curl -fsS -o /dev/null "http://$a$p"; done
  done
}

stop_all() {
  cleanup
  PIDS=()
}
PODPATH=/api/v1/namespaces/default/pods

# wrk's "99%  1.23ms" → milliseconds
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v}'; }

cpu_ticks() { [ -n "$1" ] && awk '{print $14+$15}' "/proc/$1/stat" || echo 0; }

run() { # base-url path pid [wrk args…] → "rps p99ms cpu-us-per-request"
  local base=$1 path=$2 pid=$3; shift 3
  local before after
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  out=$($LOAD_PIN wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$DURATION" --latency "$@" "$base$path")
  after=$(cpu_ticks "$pid")
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  cpu=$(awk -v d=$((after - before)) -v t="$(getconf CLK_TCK)" -v r="$reqs" 'BEGIN {printf "%.1f", (r > 0 ? d / t * 1e6 / r : 0)}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errs" ] && echo "  warning ($base$path): $errs" >&2
  echo "$rps $p99 $cpu"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "upstream: $UPSTREAM · auth-proxy ${AP_ARGS:-(defaults)} · wrk -d$DURATION · $ROUNDS interleaved rounds · $(nproc) cores · layouts: $LAYOUTS${LOAD_CPUS:+ (apart: wrk on $LOAD_CPUS, upstream on $UP_CPUS, proxy on $PROXY1_CPUS or $PROXY2_CPUS)}" >&2
printf '| layout | path | direct (no proxy) req/s | kubectl proxy req/s | auth-proxy req/s | ratio | direct p99 ms | kubectl proxy p99 ms | auth-proxy p99 ms | kubectl proxy CPU µs/req | auth-proxy CPU µs/req | CPU ratio |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for layout in $LAYOUTS; do
  start_all "$layout"
  for path in /version "$PODPATH"; do
    : >"$WORK/k"; : >"$WORK/a"; : >"$WORK/d"
    for r in $(seq 1 "$ROUNDS"); do
      # The apiserver alone, with the same token: the ceiling on this machine.
      run "$UP" "$path" "$UP_PID" -H "Authorization: Bearer $TOKEN" >>"$WORK/d"
      run "http://$KP" "$path" "$KP_PID" >>"$WORK/k"
      run "http://$AP" "$path" "$AP_PID" >>"$WORK/a"
      echo "  $layout round $r $path: direct $(tail -1 "$WORK/d") · kubectl $(tail -1 "$WORK/k") · auth-proxy $(tail -1 "$WORK/a")  (req/s p99-ms cpu-µs/req)" >&2
    done
    col() { cut -d' ' -f"$2" "$WORK/$1" | median; }
    drps=$(col d 1); dp99=$(col d 2)
    krps=$(col k 1); kp99=$(col k 2); kcpu=$(col k 3)
    arps=$(col a 1); ap99=$(col a 2); acpu=$(col a 3)
    ratio=$(awk -v a="$arps" -v k="$krps" 'BEGIN {printf "%.2f×", a/k}')
    cratio=$(awk -v a="$acpu" -v k="$kcpu" 'BEGIN {printf "%.2f×", (a > 0 ? k/a : 0)}')
    printf '| %s | `%s` | %.0f | %.0f | %.0f | %s | %.2f | %.2f | %.2f | %.1f | %.1f | %s |\n' \
      "$layout" "$path" "$drps" "$krps" "$arps" "$ratio" "$dp99" "$kp99" "$ap99" "$kcpu" "$acpu" "$cratio"
  done
  stop_all
done
