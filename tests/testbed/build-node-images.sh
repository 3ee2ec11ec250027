#!/usr/bin/env bash
# Builds the kind-like node images kindload-testnode:1.6, :1.7 and :2.1 FROM scratch
# into the stores of the given providers (default: docker podman). An image is
# rebuilt only when its inputs changed: each image carries a hash of its inputs
# (this script, the node files, and the size and mtime of every binary and
# library copied in) in a label.
#
# usage: tests/testbed/build-node-images.sh [docker|podman]...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

providers=("$@")
[ ${#providers[@]} -gt 0 ] || providers=(docker podman)
for p in "${providers[@]}"; do
  case "$p" in docker | podman) ;; *) die "unknown provider: $p" ;; esac
done

exec 9>"$CACHE/build.lock"
flock 9

ensure_debs
node="$TESTBED_DIR/node"

# plan VERSION: one "SOURCE DESTINATION" line per file of the image's root
# filesystem: busybox, containerd, ctr, the runc v2 shim, runc, the shared
# libraries they load (per ldd), and the node's configuration.
plan() {
  local v=$1 dir bin lib
  case "$v" in
    1.6) dir=/usr/bin ;;
    *) dir="$(deb_dir "containerd-$v")/usr/bin" ;;
  esac
  local bins=("$dir/containerd" "$dir/ctr" "$dir/containerd-shim-runc-v2" /usr/sbin/runc)
  echo "/bin/busybox /bin/busybox"
  for bin in "${bins[@]}"; do
    [ -x "$bin" ] || die "missing binary: $bin"
    case "$bin" in
      */runc) echo "$bin /usr/sbin/runc" ;;
      *) echo "$bin /usr/bin/${bin##*/}" ;;
    esac
  done
  for bin in "${bins[@]}"; do
    ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  done | sort -u | while read -r lib; do echo "$lib $lib"; done
  case "$v" in
    1.*) echo "$node/config-v2.toml /etc/containerd/config.toml" ;;
    *) echo "$node/config-v3.toml /etc/containerd/config.toml" ;;
  esac
  echo "$node/crictl.yaml /etc/crictl.yaml"
  echo "$node/entrypoint /usr/local/bin/entrypoint"
}

# inputs_hash VERSION: content hash of this script and the node files, size and
# mtime of binaries and libraries (dpkg -x keeps the packages' mtimes)
inputs_hash() {
  {
    sha256sum <"${BASH_SOURCE[0]}"
    sha256sum <"$node/Dockerfile"
    local src dest
    plan "$1" | while read -r src dest; do
      case "$src" in
        "$node"/*) printf '%s %s\n' "$dest" "$(sha256sum <"$src")" ;;
        *) printf '%s %s\n' "$dest" "$(stat -L -c '%s %Y' "$src")" ;;
      esac
    done
  } | sha256sum | cut -c1-16
}

# assemble VERSION: writes the build context to $CACHE/node-ctx/VERSION
assemble() {
  local v=$1 ctx="$CACHE/node-ctx/$1"
  local rootfs="$ctx/rootfs" src dest applet
  rm -rf "$ctx"
  mkdir -p "$rootfs"/{bin,etc/containerd,var/lib/containerd,run,tmp,proc,sys,dev}
  chmod 1777 "$rootfs/tmp"
  cp "$node/Dockerfile" "$ctx/Dockerfile"
  plan "$v" | while read -r src dest; do
    mkdir -p "$rootfs$(dirname "$dest")"
    cp -L "$src" "$rootfs$dest"
  done
  chmod 0755 "$rootfs/usr/local/bin/entrypoint"
  for applet in $("$rootfs/bin/busybox" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
}

for p in "${providers[@]}"; do
  "$p" info >/dev/null 2>&1 || die "$p does not answer ('$p info' failed)"
done

for v in "${NODE_VERSIONS[@]}"; do
  hash=$(inputs_hash "$v")
  image="$NODE_IMAGE:$v"
  ctx="$CACHE/node-ctx/$v"
  assembled=
  for p in "${providers[@]}"; do
    have=$("$p" image inspect --format "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$image" 2>/dev/null || true)
    if [ "$have" = "$hash" ]; then
      log "$p: $image is up to date ($hash)"
      continue
    fi
    [ -n "$assembled" ] || { assemble "$v" && assembled=1; }
    old=$("$p" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    log "$p: building $image ($hash)"
    if ! "$p" build --label "$INPUTS_LABEL=$hash" -t "$image" "$ctx" >"$CACHE/node-ctx/build-$p-$v.log" 2>&1; then
      cat "$CACHE/node-ctx/build-$p-$v.log" >&2
      die "$p build of $image failed"
    fi
    new=$("$p" image inspect --format '{{.Id}}' "$image")
    if [ -n "$old" ] && [ "$old" != "$new" ]; then
      "$p" image rm "$old" >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$ctx"
done
