#!/usr/bin/env bash
# Builds kindload-testregistry:1 FROM scratch into the stores of the given providers
# (default: docker podman): Debian's docker-registry (CNCF Distribution, the program of
# the registry:2 image), the glibc libraries it loads, and registry:2's own configuration,
# so that it stands in for registry:2 where no registry image can be pulled. Configured
# like registry:2 through REGISTRY_* environment variables. Rebuilt only when its inputs
# changed (a hash of them is kept in a label).
#
# usage: tests/testbed/build-registry-image.sh [docker|podman]...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

providers=("$@")
[ ${#providers[@]} -gt 0 ] || providers=(docker podman)
for p in "${providers[@]}"; do
  case "$p" in docker | podman) ;; *) die "unknown provider: $p" ;; esac
done

exec 9>"$CACHE/build-registry.lock"
flock 9

dir="$TESTBED_DIR/registry"
bin=/usr/bin/docker-registry
[ -x "$bin" ] || die "missing $bin (apt-get install docker-registry)"

plan() {
  echo "$bin /usr/bin/docker-registry"
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    sort -u | while read -r lib; do echo "$lib $lib"; done
  echo "$dir/config.yml /etc/docker/registry/config.yml"
}

inputs_hash() {
  {
    sha256sum <"${BASH_SOURCE[0]}"
    sha256sum <"$dir/Dockerfile"
    local src dest
    plan | while read -r src dest; do
      case "$src" in
        "$dir"/*) printf '%s %s\n' "$dest" "$(sha256sum <"$src")" ;;
        *) printf '%s %s\n' "$dest" "$(stat -L -c '%s %Y' "$src")" ;;
      esac
    done
  } | sha256sum | cut -c1-16
}

assemble() {
  local ctx=$1 rootfs="$1/rootfs" src dest
  rm -rf "$ctx"
  mkdir -p "$rootfs"/{tmp,var/lib/registry,etc/docker/registry,certs}
  chmod 1777 "$rootfs/tmp"
  cp "$dir/Dockerfile" "$ctx/Dockerfile"
  plan | while read -r src dest; do
    mkdir -p "$rootfs$(dirname "$dest")"
    cp -L "$src" "$rootfs$dest"
  done
}

image=kindload-testregistry:1
hash=$(inputs_hash)
ctx="$CACHE/registry-ctx"
assembled=
for p in "${providers[@]}"; do
  "$p" info >/dev/null 2>&1 || die "$p does not answer ('$p info' failed)"
  have=$("$p" image inspect --format "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$image" 2>/dev/null || true)
  if [ "$have" = "$hash" ]; then
    log "$p: $image is up to date ($hash)"
    continue
  fi
  [ -n "$assembled" ] || { assemble "$ctx" && assembled=1; }
  log "$p: building $image ($hash)"
  if ! "$p" build --label "$INPUTS_LABEL=$hash" -t "$image" "$ctx" >"$CACHE/registry-build-$p.log" 2>&1; then
    cat "$CACHE/registry-build-$p.log" >&2
    die "$p build of $image failed"
  fi
done
rm -rf "$ctx"
