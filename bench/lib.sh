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
