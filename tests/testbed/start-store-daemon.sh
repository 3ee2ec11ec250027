#!/usr/bin/env bash
# Starts a second Docker daemon (Docker 28.5 from Debian sid, unpacked into the
# cache, never installed) with the containerd image store, on its own socket,
# data root and exec root, backed by its own containerd 2.1 instance. Does
# nothing when the daemon already answers. Prints the daemon's DOCKER_HOST.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if docker --host "$STORE_HOST" info >/dev/null 2>&1; then
  if [ -f "$STORE_DIR/daemon.json" ]; then
    echo "$STORE_HOST"
    exit 0
  fi
  log "the cache was removed under the running containerd-store daemon: restarting it"
  stop_pidfile "$RUN_DIR/dockerd.pid" dockerd
  stop_pidfile "$RUN_DIR/containerd.pid" containerd
fi

ensure_debs
dockerd_bin="$(deb_dir docker-28.5)/usr/sbin/dockerd"
containerd_bin_dir="$(deb_dir containerd-2.1)/usr/bin"
logs="$CACHE/logs"
mkdir -p "$STORE_DIR" "$RUN_DIR" "$logs"

store_containerd_answers() {
  "$containerd_bin_dir/ctr" --address "$STORE_CONTAINERD_SOCK" version
}

if ! store_containerd_answers >/dev/null 2>&1; then
  if ! pid_alive "$RUN_DIR/containerd.pid" containerd; then
    cat >"$STORE_DIR/containerd.toml" <<TOML
version = 3
root = "$STORE_DIR/containerd"
state = "$RUN_DIR/containerd-state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = "$STORE_CONTAINERD_SOCK"

[ttrpc]
  address = "$STORE_CONTAINERD_SOCK.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STORE_DIR/opt"
TOML
    log "starting containerd 2.1 for the containerd-store daemon (log: $logs/store-containerd.log)"
    PATH="$containerd_bin_dir:$PATH" start_background "$logs/store-containerd.log" \
      "$containerd_bin_dir/containerd" --config "$STORE_DIR/containerd.toml"
    echo $! >"$RUN_DIR/containerd.pid"
  fi
  wait_for 30 store_containerd_answers ||
    { tail -n 30 "$logs/store-containerd.log" >&2; die "containerd 2.1 for the store daemon did not start"; }
fi

if ! pid_alive "$RUN_DIR/dockerd.pid" dockerd; then
  rm -f "$RUN_DIR/dockerd.pid"
  printf '{"features": {"containerd-snapshotter": true}}\n' >"$STORE_DIR/daemon.json"
  log "starting Docker 28.5 with the containerd image store on $STORE_HOST (log: $logs/store-dockerd.log)"
  PATH="$containerd_bin_dir:$PATH" start_background "$logs/store-dockerd.log" \
    "$dockerd_bin" \
    --host "$STORE_HOST" \
    --config-file "$STORE_DIR/daemon.json" \
    --data-root "$STORE_DIR/docker" \
    --exec-root "$RUN_DIR/exec" \
    --pidfile "$RUN_DIR/dockerd.pid" \
    --containerd "$STORE_CONTAINERD_SOCK" \
    --bridge none \
    --iptables=false \
    --ip6tables=false \
    --ip-forward=false \
    --ip-masq=false \
    --userland-proxy=false
fi
wait_for 60 docker --host "$STORE_HOST" info ||
  { tail -n 30 "$logs/store-dockerd.log" >&2; die "the containerd-store Docker daemon did not answer within 60 s"; }
echo "$STORE_HOST"
