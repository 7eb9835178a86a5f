#!/usr/bin/env bash
# Builds the compose lab's images from the workspace's binaries and local files only: no image is
# pulled, no FROM names a registry image, and no build step needs the network (docs/compose.md).
#
#   bash scripts/build-images.sh            # release binaries (cargo build --release first)
#   PROFILE=debug bash scripts/build-images.sh   # the debug binaries scripts/test.sh already built
#
# Layout: proxylab/runtime is FROM scratch plus what a glibc binary needs at run time (the loader,
# libc, libm, libgcc_s, an nsswitch.conf that resolves compose service names through the engine's
# /etc/hosts and DNS, the CA bundle, /tmp). Every other image is FROM proxylab/runtime plus its
# binaries, so a code change rebuilds only the layers of the binaries that changed.
# Each image carries a content hash of its inputs as a label; an image whose label matches is not
# rebuilt. Binaries are stripped when staged (a debug build's symbols would triple the images).
# etcd and etcdctl come from Debian's etcd-server/etcd-client packages, busybox (a shell for the
# node and client images) from busybox-static, curl from the host (with the libraries ldd lists),
# kubectl is the machine's static kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-release}"
TAG="${TAG:-local}"
STAGE="target/images"
LABEL="io.proxylab.content-hash"

case "$PROFILE" in
release) cargo build --release --workspace --bins --locked ;;
debug) cargo build --workspace --bins --locked ;;
*)
  echo "build-images.sh: PROFILE must be release or debug, not '$PROFILE'" >&2
  exit 2
  ;;
esac
BIN="target/$PROFILE"

for tool in docker strip sha256sum ldd apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || {
    echo "build-images.sh: '$tool' is missing" >&2
    exit 1
  }
done
kubectl_bin="$(readlink -f "$(command -v kubectl || true)")"
[ -x "$kubectl_bin" ] || { echo "build-images.sh: kubectl is missing" >&2; exit 1; }
if ldd "$kubectl_bin" >/dev/null 2>&1; then
  echo "build-images.sh: $kubectl_bin is dynamically linked; a static kubectl is needed" >&2
  exit 1
fi
curl_bin="$(command -v curl || true)"
[ -x "$curl_bin" ] || { echo "build-images.sh: curl is missing" >&2; exit 1; }

mkdir -p "$STAGE/debs"

# Debian packages, downloaded once into target/images/debs and unpacked there.
deb_file() { # PACKAGE PATH-IN-PACKAGE -> prints the unpacked file
  local pkg="$1" path="$2" dir="$STAGE/debs/$1"
  if [ ! -e "$dir/$path" ]; then
    (cd "$STAGE/debs" && rm -f "${pkg}"_*.deb && apt-get download -q "$pkg" >/dev/null 2>&1)
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$STAGE/debs/${pkg}"_*.deb "$dir"
  fi
  echo "$dir/$path"
}

# Copies the shared libraries and the loader a dynamic binary needs into ROOT, at the host's paths.
copy_libs() { # ROOT BINARY...
  local root="$1"
  shift
  ldd "$@" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# Stages BINARY stripped at ROOT/usr/local/bin/NAME.
stage_bin() { # ROOT BINARY [NAME]
  local root="$1" src="$2" name="${3:-$(basename "$2")}"
  mkdir -p "$root/usr/local/bin"
  strip -o "$root/usr/local/bin/$name" "$src" 2>/dev/null || cp "$src" "$root/usr/local/bin/$name"
  chmod 755 "$root/usr/local/bin/$name"
}

# Builds image NAME from $STAGE/NAME (a Dockerfile and rootfs/) unless its content hash is current.
build() { # NAME
  local name="$1" dir="$STAGE/$1" hash have
  # The hash covers every staged file's path, mode and bytes, the Dockerfile, and the parent's id.
  hash="$( (cd "$dir" && find . -type f -o -type l | LC_ALL=C sort | while read -r f; do
    stat -c '%n %a' "$f"
    if [ -L "$f" ]; then readlink "$f"; else sha256sum <"$f"; fi
  done
    [ "$name" = runtime ] || docker image inspect -f '{{.Id}}' "proxylab/runtime:$TAG") | sha256sum | cut -c1-16)"
  have="$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "proxylab/$name:$TAG" 2>/dev/null || true)"
  if [ "$have" = "$hash" ]; then
    echo "proxylab/$name:$TAG is current ($hash)"
    return
  fi
  echo "building proxylab/$name:$TAG ($hash)"
  # The legacy builder: BuildKit needs the buildx plugin this engine may not have. Its output is
  # shown only when the build fails.
  local out
  if ! out="$(DOCKER_BUILDKIT=0 docker build -q --label "$LABEL=$hash" -t "proxylab/$name:$TAG" "$dir" 2>&1)"; then
    echo "$out" >&2
    exit 1
  fi
}

fresh() { # NAME -> an empty staging dir with rootfs/
  rm -rf "${STAGE:?}/$1" && mkdir -p "$STAGE/$1/rootfs"
}

# --- runtime: what every glibc binary of the workspace needs ------------------------------------
fresh runtime
r="$STAGE/runtime/rootfs"
copy_libs "$r" "$BIN/proxylab" "$BIN/forwarder" "$BIN/auth-proxy" "$BIN/ha-balancer" "$BIN/cloud-lb"
mkdir -p "$r/etc/ssl/certs" "$r/tmp"
chmod 1777 "$r/tmp"
cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
cat >"$STAGE/runtime/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
EOF
build runtime

# An image FROM proxylab/runtime with the given binaries.
simple() { # NAME BINARY...
  local name="$1"
  shift
  fresh "$name"
  for b in "$@"; do stage_bin "$STAGE/$name/rootfs" "$b"; done
  printf 'FROM proxylab/runtime:%s\nCOPY rootfs/ /\nENTRYPOINT ["/usr/local/bin/%s"]\n' \
    "$TAG" "$(basename "$1")" >"$STAGE/$name/Dockerfile"
  build "$name"
}

# proxylab: the apiservers and the one-shot pki service.
simple proxylab "$BIN/proxylab"
simple ha-balancer "$BIN/ha-balancer"
simple auth-proxy "$BIN/auth-proxy"

busybox="$(deb_file busybox-static bin/busybox)"
# Stages busybox at ROOT/bin with a link per applet.
stage_busybox() { # ROOT APPLET...
  local root="$1"
  shift
  mkdir -p "$root/bin"
  cp "$busybox" "$root/bin/busybox"
  for applet in "$@"; do ln -sf busybox "$root/bin/$applet"; done
}

# cloud-lb: busybox's `ip` too, so the entrypoint can route the LoadBalancer range to lo (AnyIP)
# before the controller binds addresses from it (docs/compose.md).
fresh cloud-lb
stage_bin "$STAGE/cloud-lb/rootfs" "$BIN/cloud-lb"
stage_busybox "$STAGE/cloud-lb/rootfs" sh ip
printf 'FROM proxylab/runtime:%s\nCOPY rootfs/ /\nENTRYPOINT ["/usr/local/bin/cloud-lb"]\n' "$TAG" >"$STAGE/cloud-lb/Dockerfile"
build cloud-lb

# node: the node agent and the forwarder in one network namespace, started by busybox sh (which
# also routes the pod and ClusterIP ranges to lo; wget and nc to try services from inside).
fresh node
stage_bin "$STAGE/node/rootfs" "$BIN/proxylab"
stage_bin "$STAGE/node/rootfs" "$BIN/forwarder"
stage_busybox "$STAGE/node/rootfs" sh ip wget nc sleep cat timeout
printf 'FROM proxylab/runtime:%s\nCOPY rootfs/ /\nENTRYPOINT ["/bin/sh", "-c"]\n' "$TAG" >"$STAGE/node/Dockerfile"
build node

# etcd: Debian's etcd-server and etcd-client.
fresh etcd
stage_bin "$STAGE/etcd/rootfs" "$(deb_file etcd-server usr/bin/etcd)" etcd
stage_bin "$STAGE/etcd/rootfs" "$(deb_file etcd-client usr/bin/etcdctl)" etcdctl
# Debian links its Go programs against glibc: their libraries too.
copy_libs "$STAGE/etcd/rootfs" "$(deb_file etcd-server usr/bin/etcd)" "$(deb_file etcd-client usr/bin/etcdctl)"
mkdir -p "$STAGE/etcd/rootfs/var/lib/etcd"
printf 'FROM proxylab/runtime:%s\nCOPY rootfs/ /\nENTRYPOINT ["/usr/local/bin/etcd"]\n' "$TAG" >"$STAGE/etcd/Dockerfile"
build etcd

# client: kubectl, curl (with its libraries) and a busybox shell for `docker compose exec client sh`.
fresh client
c="$STAGE/client/rootfs"
cp "$kubectl_bin" "$c/kubectl.tmp" && mkdir -p "$c/usr/local/bin" && mv "$c/kubectl.tmp" "$c/usr/local/bin/kubectl"
mkdir -p "$c/usr/bin"
cp "$curl_bin" "$c/usr/bin/curl"
copy_libs "$c" "$curl_bin"
stage_busybox "$c" sh sleep cat ls grep env sed wget nc
printf 'FROM proxylab/runtime:%s\nCOPY rootfs/ /\nENV HOME=/root\nWORKDIR /root\n' "$TAG" >"$STAGE/client/Dockerfile"
mkdir -p "$c/root"
build client

docker image ls --filter "reference=proxylab/*:$TAG" --format '{{.Repository}}:{{.Tag}}\t{{.Size}}'
