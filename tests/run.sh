#!/usr/bin/env bash
# The project's test command. On Debian bookworm as root it provisions what the
# integration tests need, runs `cargo test --locked` with any arguments given, and, when
# given none, checks that the crate as published builds (`cargo package`):
#
#   - installs docker.io podman containerd runc busybox-static docker-registry
#     (and curl, uidmap, man-db for `man -l`) when missing, and starts dockerd when
#     `docker info` fails;
#   - fetches containerd 1.7 (trixie), containerd 2.1 and Docker 28.5 (sid) into
#     .testbed-cache/ without installing them;
#   - builds the node images kindload-testnode:{1.6,1.7,2.1} and the registry image
#     kindload-testregistry:1 (Debian's docker-registry FROM scratch) for docker and podman;
#   - starts a second dockerd with the containerd image store and a local registry;
#   - creates a non-root user with subordinate ids for rootless Podman (in the docker group).
#
# Everything is reused when already there, so running it again is quick.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/testbed/common.sh"

started=$SECONDS

[ "$(id -u)" -eq 0 ] || die "run as root: the test bed installs packages and starts daemons"

packages=(docker.io podman containerd runc busybox-static docker-registry curl uidmap man-db)
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >"$CACHE/apt-update.log" 2>&1 || log "apt-get update reported errors (see $CACHE/apt-update.log)"
  apt-get install -y -q "${missing[@]}" >"$CACHE/apt-install.log" 2>&1 ||
    { tail -n 30 "$CACHE/apt-install.log" >&2; die "apt-get install ${missing[*]} failed"; }
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $CACHE/logs/dockerd.log)"
  start_background "$CACHE/logs/dockerd.log" dockerd
  wait_for 60 docker info ||
    { tail -n 30 "$CACHE/logs/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
fi
podman info >/dev/null 2>&1 || die "podman does not answer ('podman info' failed)"

"$TESTBED_DIR/build-node-images.sh" docker podman
"$TESTBED_DIR/build-registry-image.sh" docker podman
"$TESTBED_DIR/start-store-daemon.sh" >/dev/null
"$TESTBED_DIR/start-registry.sh"
rootless_user=$("$TESTBED_DIR/rootless-user.sh")

log "provisioning took $((SECONDS - started)) s"

export KINDLOAD_REQUIRE_ENGINES=1
export KINDLOAD_TEST_CONTAINERD_STORE_HOST="$STORE_HOST"
export KINDLOAD_TEST_REGISTRY="$REGISTRY_ADDR"
export KINDLOAD_TEST_ROOTLESS_USER="$rootless_user"
cd "$REPO_ROOT"
cargo test --locked "$@"

# The published crate must build: `cargo package` packs it (without tests, fixtures and
# fuzz corpora) and builds the packed copy. Its own target directory, because that build
# would otherwise replace target/debug/kindload, the binary the tests run.
if [ $# -eq 0 ]; then
  started=$SECONDS
  CARGO_TARGET_DIR="$REPO_ROOT/target/package-verify" cargo package --locked --allow-dirty --quiet
  log "cargo package took $((SECONDS - started)) s"
fi
