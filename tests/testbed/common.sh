# Shared settings for the test-bed scripts; sourced, not executed.

TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TESTBED_DIR/../.." && pwd)
CACHE=${KINDLOAD_TESTBED_CACHE:-$REPO_ROOT/.testbed-cache}
# Unix socket paths are limited to 108 bytes, so sockets and exec roots live
# under /run, in a directory unique to this checkout.
RUN_DIR=/run/kindload-testbed-$(printf '%s' "$CACHE" | sha256sum | cut -c1-8)

NODE_IMAGE=kindload-testnode
NODE_VERSIONS=(1.6 1.7 2.1)
INPUTS_LABEL=io.kindload.testbed.inputs

# Debian packages fetched without touching the host's apt state:
# name  package  suite  expected upstream major.minor
DEB_SPECS=(
  "containerd-1.7 containerd trixie 1.7"
  "containerd-2.1 containerd sid 2.1"
  "docker-28.5 docker.io sid 28.5"
)

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE"

apt_private() {
  local apt="$CACHE/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  if [ ! -f "$apt/sources.list" ]; then
    local mirror
    mirror=$(debian_mirror)
    cat > "$apt/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main
LIST
  fi
  APT_OPTS=(
    -o "Dir::Etc::sourcelist=$apt/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache=$apt/cache"
    -o "APT::Sandbox::User=root"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
  )
}

# debian_mirror: the Debian archive the host's own apt uses (its main suite's base URI),
# so the newer suites come from wherever this machine is set up to get packages.
debian_mirror() {
  local codename uri
  codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-bookworm}")
  uri=$(apt-get indextargets --format '$(URI)' "Created-By: Packages" 2>/dev/null |
    grep -m1 "/dists/$codename/main/binary-" | sed 's#/dists/.*##')
  [ -n "$uri" ] || die "cannot tell which Debian mirror apt uses (run apt-get update first)"
  printf '%s\n' "$uri"
}

# ensure_debs: fetch and unpack every package set in DEB_SPECS that is not
# in the cache yet (one private `apt-get update` at most).
ensure_debs() {
  local spec name pkg suite expect updated=
  for spec in "${DEB_SPECS[@]}"; do
    read -r name pkg suite expect <<<"$spec"
    [ -f "$CACHE/unpacked/$name/.version" ] && continue
    apt_private
    if [ -z "$updated" ]; then
      log "updating private apt lists (trixie, sid)"
      apt-get "${APT_OPTS[@]}" -q update >"$CACHE/apt/update.log" 2>&1 \
        || { cat "$CACHE/apt/update.log" >&2; die "apt-get update (private state) failed"; }
      updated=1
    fi
    fetch_deb "$name" "$pkg" "$suite" "$expect"
  done
}

# deb_dir NAME: where the package set NAME (see DEB_SPECS) is unpacked.
deb_dir() {
  local dir="$CACHE/unpacked/$1"
  [ -f "$dir/.version" ] || die "$1 is not unpacked yet (ensure_debs)"
  printf '%s\n' "$dir"
}

fetch_deb() {
  local name=$1 pkg=$2 suite=$3 expect=$4
  local dest="$CACHE/unpacked/$name" version upstream
  version=$(apt-cache "${APT_OPTS[@]}" show "$pkg/$suite" 2>/dev/null | awk '/^Version:/ && !v { v = $2 } END { print v }')
  [ -n "$version" ] || die "$pkg not found in $suite"
  upstream=${version#*:}
  case "$upstream" in
    "$expect".*) ;;
    *) die "$suite now carries $pkg $version, not $expect.x: update DEB_SPECS in tests/testbed/common.sh" ;;
  esac
  log "fetching $pkg $version from $suite"
  local debs="$CACHE/debs"
  local deb="$debs/${pkg}_${version//:/%3a}_$(dpkg --print-architecture).deb"
  mkdir -p "$debs"
  if [ ! -f "$deb" ]; then
    (cd "$debs" && apt-get "${APT_OPTS[@]}" -q download "$pkg=$version" >/dev/null) \
      || die "apt-get download $pkg=$version failed"
  fi
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp"
  dpkg -x "$deb" "$dest.tmp"
  printf '%s %s\n' "$pkg" "$version" > "$dest.tmp/.version"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
}

# The second Docker daemon (Docker 28.5 with the containerd image store) and
# the containerd 2.1 instance it manages images in.
STORE_DIR="$CACHE/store"
STORE_SOCK="$RUN_DIR/docker.sock"
STORE_CONTAINERD_SOCK="$RUN_DIR/containerd.sock"
STORE_HOST="unix://$STORE_SOCK"

REGISTRY_ADDR=127.0.0.1:5000

# The non-root user running rootless Podman (tests/testbed/rootless-user.sh).
ROOTLESS_USER=kindload-rootless

# pid_alive PIDFILE NAME: the process recorded in PIDFILE runs and is NAME
pid_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# stop_pidfile PIDFILE NAME: stop the process recorded in PIDFILE if it is NAME
stop_pidfile() {
  pid_alive "$1" "$2" || return 0
  local pid i
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    [ -d "/proc/$pid" ] || break
    sleep 0.25
  done
  rm -f "$1"
}

# wait_for SECONDS COMMAND...: retry COMMAND every half second, for up to SECONDS
wait_for() {
  local secs=$1 i
  shift
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# start_background LOGFILE COMMAND...: run COMMAND detached from this shell and
# its session, appending its output to LOGFILE; its pid is then in $!
start_background() {
  local logfile=$1
  shift
  mkdir -p "$(dirname "$logfile")"
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
}
