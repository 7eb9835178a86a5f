# Shared by the bench scripts (sourced): peers installed on demand, the L4 tools built, and every
# process a script starts stopped when it exits.

# need_tools TOOL...: installs, from Debian packages of the same names, the tools not on PATH.
need_tools() {
  local missing=() tool sudo=""
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  ((${#missing[@]})) || return 0
  echo "installing ${missing[*]}" >&2
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# build_l4: the release forwarder and the l4bench load tool; sets FWD and B to their paths.
build_l4() {
  ( cd "$ROOT" && cargo build --release -q -p proxylab-forwarder --bin forwarder --example l4bench )
  FWD="$ROOT/target/release/forwarder"
  B="$ROOT/target/release/examples/l4bench"
}

# Processes appended to PIDS are stopped on exit. socat forks a child per client: the children
# (by parent pid) go before the parents.
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# --- core layouts shared by the bench scripts ----------------------------------------------------
# allowed_cpus: the CPUs this shell may run on (its affinity list, expanded), one per line.
allowed_cpus() {
  local list part
  list=$(taskset -pc $$ | sed 's/.*: *//')
  for part in ${list//,/ }; do
    if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
  done
}

# apart_cpus: core sets for the "apart" layouts, all disjoint, from the CPUs this shell may use:
# LOAD_CPUS (4, the load generator), UP_CPUS (1, the upstream/backend), PROXY1_CPUS (1) and
# PROXY2_CPUS (2: PROXY1's core and the next one). Needs 7 CPUs; fails with a message otherwise.
# APART_CPUS="a b c d e f g" picks the seven CPUs instead (e.g. one NUMA node's, or to keep the first
# cores for the system); it is checked against the CPUs this shell may use.
apart_cpus() {
  local cpus c allowed
  if [ -n "${APART_CPUS:-}" ]; then
    allowed=" $(allowed_cpus | paste -sd' ') "
    read -ra cpus <<<"${APART_CPUS//,/ }"
    for c in "${cpus[@]}"; do
      [[ $allowed == *" $c "* ]] || { echo "APART_CPUS: CPU $c is not one this shell may use:$allowed" >&2; return 1; }
    done
  else
    mapfile -t cpus < <(allowed_cpus)
  fi
  if ((${#cpus[@]} < 7)); then
    local from="this shell may use"
    [ -n "${APART_CPUS:-}" ] && from="APART_CPUS names"
    echo "the apart layouts need 7 CPUs (4 load, 1 upstream, 2 proxy); $from ${#cpus[@]}" >&2
    return 1
  fi
  LOAD_CPUS="${cpus[0]},${cpus[1]},${cpus[2]},${cpus[3]}"
  UP_CPUS="${cpus[4]}"
  PROXY1_CPUS="${cpus[5]}"
  PROXY2_CPUS="${cpus[5]},${cpus[6]}"
}

# default_layouts SMALL BIG: BIG on machines with 8 CPUs or more (room for the apart layouts with one
# core to spare for the system), else SMALL.
default_layouts() {
  if (($(nproc) >= 8)); then echo "$2"; else echo "$1"; fi
}

