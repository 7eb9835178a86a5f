#!/usr/bin/env bash
# Time from `proxylab lab up` to a ready lab (every node Ready, every topology pod Ready, lab.json
# written), as the lab itself measures it, over N runs of the release build.
#   bash bench/lab-ready.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
cargo build --release --bin proxylab >/dev/null
bin=target/release/proxylab
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
times=()
for i in $(seq 1 "$runs"); do
  rm -rf "$state/s"
  out=$(RUST_LOG=error "$bin" lab up --state-dir "$state/s" --exit-when-ready 2>/dev/null)
  ms=$(sed -n 's/^proxylab lab ready in \([0-9]*\) ms.*/\1/p' <<<"$out")
  [ -n "$ms" ] || { echo "run $i: lab did not report readiness" >&2; exit 1; }
  times+=("$ms")
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
n=${#sorted[@]}
echo "lab up → ready, release build, $n runs (ms): min ${sorted[0]}  median ${sorted[$((n/2))]}  max ${sorted[$((n-1))]}"
echo "runs: ${times[*]}"
