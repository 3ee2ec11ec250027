#!/usr/bin/env bash
# Creates the non-root user that runs rootless Podman in the tests: its own home,
# subordinate uid and gid ranges (/etc/subuid, /etc/subgid; newuidmap from `uidmap`),
# and membership in the `docker` group, because rootless containers fail on these
# hosts (cgroups v1/hybrid) and the test nodes are hosted by the root Docker engine.
# Does nothing when the user is already set up. Prints the user name.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

user=$ROOTLESS_USER
if ! id -u "$user" >/dev/null 2>&1; then
  log "creating user $user for rootless Podman"
  useradd --create-home --shell /bin/bash "$user"
fi
# A subordinate range no other entry uses: above the highest one listed.
for file in /etc/subuid /etc/subgid; do
  touch "$file"
  if ! grep -q "^$user:" "$file"; then
    start=$(awk -F: '{ end = $2 + $3; if (end > max) max = end } END { print (max > 100000 ? max : 100000) }' "$file")
    printf '%s:%s:65536\n' "$user" "$start" >>"$file"
  fi
done
getent group docker >/dev/null || die "no docker group (is docker.io installed?)"
id -nG "$user" | tr ' ' '\n' | grep -qx docker || usermod -aG docker "$user"

as_user() {
  setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" "$@"
}
as_user podman info --format '{{.Host.Security.Rootless}}' 2>/dev/null | grep -qx true ||
  die "rootless Podman does not work for $user ('podman info' as $user failed)"
as_user docker info >/dev/null 2>&1 || die "$user cannot use Docker (docker group membership?)"
printf '%s\n' "$user"
