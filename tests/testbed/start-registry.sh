#!/usr/bin/env bash
# Starts Debian's docker-registry on 127.0.0.1:5000 (plain HTTP, no auth), with
# its configuration and storage in the cache. Does nothing when it already answers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

registry_answers() { curl -fsS --max-time 2 "http://$REGISTRY_ADDR/v2/"; }

if registry_answers >/dev/null 2>&1; then
  exit 0
fi

dir="$CACHE/registry"
mkdir -p "$dir/data" "$CACHE/logs" "$RUN_DIR"
if ! pid_alive "$RUN_DIR/registry.pid" docker-registry; then
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YAML
  log "starting docker-registry on $REGISTRY_ADDR (log: $CACHE/logs/registry.log)"
  start_background "$CACHE/logs/registry.log" docker-registry serve "$dir/config.yml"
  echo $! >"$RUN_DIR/registry.pid"
fi
wait_for 30 registry_answers ||
  { tail -n 20 "$CACHE/logs/registry.log" >&2; die "docker-registry did not answer on $REGISTRY_ADDR (is the port taken by another service?)"; }
