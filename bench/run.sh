#!/usr/bin/env bash
# kindload against two baselines, side by side on fresh test-bed clusters: kind's loading
# algorithm (the commands `kind load docker-image` runs) and kind's registry recipe
# (`docker push` to a registry container on the nodes' network, then a pull on every node).
# See README.md, section "Benchmark".
#
#   bench/run.sh [--rounds N] [--containerd 1.6|1.7|2.1] [--quick] [--results FILE]
#                [--cases kind,floor,rss,growth,tags,registry,parallel,push] [--sources docker,containerd-store,podman]
#                [--soak N]
#
# Needs the test bed (run `tests/run.sh` once first): Docker, the node image
# kindload-testnode:<containerd version>, and for the registry cases the registry image
# kindload-testregistry:1, Podman and the containerd-store Docker daemon. Prints a summary
# table and writes the raw numbers to bench/results/latest.json (or FILE).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$BENCH_DIR")

rounds=
containerd=2.1
quick=0
snapshotter=overlayfs
results=$BENCH_DIR/results/latest.json
cases=kind,floor,rss,growth,tags,registry,parallel,push
sources=docker,containerd-store,podman
soak=

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --rounds=*) rounds=${1#*=}; shift ;;
    --containerd) containerd=${2:?--containerd needs a version}; shift 2 ;;
    --containerd=*) containerd=${1#*=}; shift ;;
    --quick) quick=1; shift ;;
    --results) results=${2:?--results needs a file}; shift 2 ;;
    --results=*) results=${1#*=}; shift ;;
    --cases) cases=${2:?--cases needs a list}; shift 2 ;;
    --cases=*) cases=${1#*=}; shift ;;
    --sources) sources=${2:?--sources needs a list}; shift 2 ;;
    --sources=*) sources=${1#*=}; shift ;;
    --soak) soak=${2:?--soak needs a number}; shift 2 ;;
    --soak=*) soak=${1#*=}; shift ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done

case $containerd in 1.6 | 1.7 | 2.1) ;; *) echo "--containerd must be 1.6, 1.7 or 2.1" >&2; exit 2 ;; esac
IFS=, read -r -a CASES <<<"$cases"
IFS=, read -r -a SOURCES <<<"$sources"
for c in "${CASES[@]}"; do
  case $c in kind | floor | rss | growth | tags | registry | parallel | push) ;; *) echo "--cases: unknown case group '$c' (kind, floor, rss, growth, tags, registry, parallel, push)" >&2; exit 2 ;; esac
done
for s in "${SOURCES[@]}"; do
  case $s in docker | containerd-store | podman) ;; *) echo "--sources: unknown source '$s' (docker, containerd-store, podman)" >&2; exit 2 ;; esac
done
[ ${#CASES[@]} -gt 0 ] || { echo "--cases is empty" >&2; exit 2; }
selected() { [[ ",$cases," == *",$1,"* ]]; }
by_source() { selected registry || selected push; }
if by_source && [ ${#SOURCES[@]} -eq 0 ]; then echo "--sources is empty" >&2; exit 2; fi

# Sizes in MiB.
if [ "$quick" = 1 ]; then
  : "${rounds:=1}"
  big_layers=4 big_layer_mb=10 app_mb=1 # case 1-3, 7 and 8: 4 x 10 MiB + 1 MiB
  growth_base_mb=10 growth_top_mb=5 growth_reloads=5
  rss_layers=4 rss_layer_mb=25 # case 5: 100 MiB
  par_base_mb=10 par_app_mb=1 # case 9
  : "${soak:=3}"
else
  : "${rounds:=3}"
  big_layers=4 big_layer_mb=100 app_mb=1 # 4 x 100 MiB + 1 MiB
  growth_base_mb=100 growth_top_mb=20 growth_reloads=20
  rss_layers=8 rss_layer_mb=128 # 1 GiB
  par_base_mb=60 par_app_mb=5 # case 9: three images FROM one 60 MiB base, 5 MiB each
  : "${soak:=20}"
fi
[[ $soak =~ ^[0-9]+$ ]] || { echo "--soak must be a number" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive number" >&2; exit 2; }

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Preconditions

docker info >/dev/null 2>&1 || die "docker does not answer; run tests/run.sh (the test command) first"
NODE_IMAGE=kindload-testnode:$containerd
docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 ||
  die "node image $NODE_IMAGE is missing; run tests/run.sh (the test command) first, it builds it"
command -v python3 >/dev/null || die "python3 is needed for the measurements and the summary"

REGISTRY_IMAGE=kindload-testregistry:1
with_registry=0 # kindload-registry variants of cases 4 and 5, and case 8, need the registry image
if by_source || selected rss || selected growth; then
  if docker image inspect "$REGISTRY_IMAGE" >/dev/null 2>&1; then
    with_registry=1
  elif by_source; then
    die "registry image $REGISTRY_IMAGE is missing; run tests/run.sh (the test command) first, it builds it"
  else
    log "registry image $REGISTRY_IMAGE is missing: cases 4 and 5 run without a registry only"
  fi
fi

# The containerd-store Docker daemon of the test bed (tests/testbed/start-store-daemon.sh).
STORE_HOST=${KINDLOAD_TEST_CONTAINERD_STORE_HOST:-}
if [ -z "$STORE_HOST" ]; then
  STORE_HOST=$(bash -c 'source "$1/tests/testbed/common.sh" >/dev/null 2>&1 && printf "%s" "$STORE_HOST"' _ "$REPO_ROOT" || true)
fi
uses_source() { by_source && [[ ",$sources," == *",$1,"* ]]; }
if uses_source containerd-store; then
  docker --host "$STORE_HOST" info >/dev/null 2>&1 ||
    die "the containerd-store Docker daemon does not answer at ${STORE_HOST:-?}; run tests/run.sh (it starts it), or leave it out with --sources docker,podman"
fi
if uses_source podman || uses_source containerd-store; then
  podman info >/dev/null 2>&1 ||
    die "podman does not answer; run tests/run.sh first (the containerd-store source also needs it: its nodes run on Podman), or leave it out with --sources"
  podman image inspect "$NODE_IMAGE" "$REGISTRY_IMAGE" >/dev/null 2>&1 ||
    die "podman lacks $NODE_IMAGE or $REGISTRY_IMAGE; run tests/run.sh (the test command) first, it builds them"
fi
command -v curl >/dev/null || ! by_source || die "curl is needed to wait for the registries (apt-get install curl)"

log "building kindload (cargo build --release)"
(cd "$REPO_ROOT" && cargo build --release --locked --quiet) || die "cargo build --release failed"
KINDLOAD=$REPO_ROOT/target/release/kindload

# ---------------------------------------------------------------------------------------------
# Bookkeeping and cleanup: everything this run creates carries the label below, on Docker,
# Podman and the containerd-store daemon; kindload's own registries are named $PREFIX-klreg-*.

OWNER_LABEL=io.kindload.bench.owner
LABEL="$OWNER_LABEL=$$"
PREFIX=kb$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kindload-bench.XXXXXX")
echo $$ >"$WORK/owner"
RAW=$WORK/raw.jsonl
: >"$RAW"
KL_REGISTRIES=$WORK/kindload-registries # "provider name" per line
: >"$KL_REGISTRIES"

have_podman() { command -v podman >/dev/null && podman info >/dev/null 2>&1; }
have_store() { [ -n "$STORE_HOST" ] && docker --host "$STORE_HOST" info >/dev/null 2>&1; }

# remove_owned LABEL_FILTER: containers, kindload registries, networks and images of an owner
remove_owned() {
  local filter=$1 prov ids
  for prov in docker podman; do
    [ "$prov" = docker ] || have_podman || continue
    ids=$($prov ps -aq --filter "label=$filter")
    [ -z "$ids" ] || $prov rm -f -v $ids >/dev/null 2>&1 || true
    ids=$($prov network ls -q --filter "label=$filter")
    [ -z "$ids" ] || $prov network rm $ids >/dev/null 2>&1 || true
    ids=$($prov images -q --filter "label=$filter" | sort -u)
    [ -z "$ids" ] || $prov rmi -f $ids >/dev/null 2>&1 || true
  done
  if have_store; then
    local store=(docker --host "$STORE_HOST") firsts id
    ids=$("${store[@]}" images -q --filter "label=$filter" | sort -u)
    [ -n "$ids" ] || return 0
    # The legacy builder leaves the last step's image, unlabelled, under the labelled one; the
    # containerd store keeps it, dangling. The first layer (random data of this run) tells it.
    firsts=$("${store[@]}" image inspect -f '{{index .RootFS.Layers 0}}' $ids 2>/dev/null | sort -u)
    "${store[@]}" rmi -f $ids >/dev/null 2>&1 || true
    local first
    for id in $("${store[@]}" images -q --filter dangling=true | sort -u); do
      first=$("${store[@]}" image inspect -f '{{index .RootFS.Layers 0}}' "$id" 2>/dev/null) || continue
      if [ -n "$first" ] && grep -qxF "$first" <<<"$firsts"; then
        "${store[@]}" rmi "$id" >/dev/null 2>&1 || true
      fi
    done
  fi
}

# remove_kindload_registry PROVIDER NAME: the container `kindload registry up` made, and its volume
remove_kindload_registry() {
  $1 rm -f -v "$2" >/dev/null 2>&1 || true
  $1 volume rm "$2-data" >/dev/null 2>&1 || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pids prov name
  pids=$(jobs -p)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  wait 2>/dev/null || true
  while read -r prov name; do
    remove_kindload_registry "$prov" "$name"
  done <"$KL_REGISTRIES"
  remove_owned "$LABEL"
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted; cleaning up"; exit 130' INT TERM

# Leftovers of runs killed before their trap ran (owner process gone).
sweep_orphans() {
  local prov owner name dir
  for prov in docker podman; do
    [ "$prov" = docker ] || have_podman || continue
    for name in $($prov ps -a --filter label=io.kindload.registry --format '{{.Names}}' | grep -E '^kb[0-9]+-klreg-' || true); do
      owner=${name#kb}
      owner=${owner%%-*}
      [ -d "/proc/$owner" ] || remove_kindload_registry "$prov" "$name"
    done
    for owner in $( ($prov ps -a --format "{{.Label \"$OWNER_LABEL\"}}" --filter "label=$OWNER_LABEL"
      $prov network ls -q --filter "label=$OWNER_LABEL" |
        xargs -r $prov network inspect --format "{{index .Labels \"$OWNER_LABEL\"}}"
      $prov images --format "{{.ID}}" --filter "label=$OWNER_LABEL" |
        xargs -r $prov image inspect --format "{{index .Config.Labels \"$OWNER_LABEL\"}}") 2>/dev/null | sort -u); do
      [ -d "/proc/$owner" ] || remove_owned "$OWNER_LABEL=$owner"
    done
  done
  for dir in "${TMPDIR:-/tmp}"/kindload-bench.*; do
    [ -f "$dir/owner" ] && owner=$(cat "$dir/owner") && [ -n "$owner" ] || continue
    [ -d "/proc/$owner" ] || rm -rf "$dir"
  done
  if have_store; then
    for owner in $(docker --host "$STORE_HOST" images --format "{{.ID}}" --filter "label=$OWNER_LABEL" |
      xargs -r docker --host "$STORE_HOST" image inspect --format "{{index .Config.Labels \"$OWNER_LABEL\"}}" | sort -u); do
      [ -d "/proc/$owner" ] || remove_owned "$OWNER_LABEL=$owner"
    done
  fi
}
sweep_orphans

now() { printf '%s' "$EPOCHREALTIME"; }
# busy_seconds: CPU time the whole machine has spent busy (steal included: the VM's share
# taken by others shows as busy too), from /proc/stat at USER_HZ 100.
busy_seconds() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100; exit }' /proc/stat; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# record CASE TOOL ROUND SECONDS [JSON fields without braces]
record() {
  local extra=${5:+, $5}
  printf '{"case": "%s", "tool": "%s", "round": %s, "seconds": %s%s}\n' "$1" "$2" "$3" "$4" "$extra" >>"$RAW"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------------
# Clusters: kind-like nodes as tests/support/mod.rs makes them. PROVIDER hosts them (docker
# unless a case sets podman).

PROVIDER=docker
# Podman 4.3's default limits exceed this machine's hard limits (tests/testbed/README.md).
podman_run_args() { [ "$PROVIDER" != podman ] || printf '%s\n' --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --runtime runc; }

# On a network, nodes get containerd's registry config_path = /etc/containerd/certs.d, as kind
# node images since v0.27 do: a wrapper around the node image's own entrypoint appends it.
CONFIG_PATH=/etc/containerd/certs.d
# shellcheck disable=SC2016 # expanded by the node's shell
ADD_CONFIG_PATH='printf "\n[%s]\n  config_path = \"%s\"\n" "$KINDLOAD_TEST_CONFIG_PATH_TABLE" "$KINDLOAD_TEST_CONFIG_PATH" >> /etc/containerd/config.toml && mkdir -p "$KINDLOAD_TEST_CONFIG_PATH" && exec /usr/local/bin/entrypoint'
if [[ $containerd == 1.* ]]; then
  CONFIG_PATH_TABLE='plugins."io.containerd.grpc.v1.cri".registry'
else
  CONFIG_PATH_TABLE='plugins."io.containerd.cri.v1.images".registry'
fi

cluster_seq=0
# new_cluster NODES [NETWORK]: starts a cluster of NODES nodes (control-plane + workers),
# on NETWORK with config_path when given (else on no network); sets CLUSTER, NODES.
new_cluster() {
  cluster_seq=$((cluster_seq + 1))
  start_nodes "$PREFIX-$cluster_seq" "$1" "${2:-}"
}

# start_nodes NAME NODES [NETWORK]: the nodes of cluster NAME (again, after remove_cluster)
start_nodes() {
  local name=$1 count=$2 network=${3:-} role node i
  NODES=("$name-control-plane")
  for ((i = 1; i < count; i++)); do
    if [ "$i" = 1 ]; then NODES+=("$name-worker"); else NODES+=("$name-worker$i"); fi
  done
  local extra=() cmd=()
  mapfile -t extra < <(podman_run_args)
  if [ -n "$network" ]; then
    extra+=(--network "$network" --entrypoint /bin/sh
      -e "KINDLOAD_TEST_CONFIG_PATH_TABLE=$CONFIG_PATH_TABLE" -e "KINDLOAD_TEST_CONFIG_PATH=$CONFIG_PATH")
    cmd=(-c "$ADD_CONFIG_PATH")
  else
    extra+=(--network none)
  fi
  for node in "${NODES[@]}"; do
    role=worker
    [[ $node == *-control-plane ]] && role=control-plane
    $PROVIDER run --detach --name "$node" --hostname "$node" \
      --label "io.x-k8s.kind.cluster=$name" --label "io.x-k8s.kind.role=$role" --label "$LABEL" \
      --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      -v /var/lib/containerd --tmpfs /run --tmpfs /tmp \
      -e "KINDLOAD_TEST_SNAPSHOTTER=$snapshotter" "${extra[@]}" \
      "$NODE_IMAGE" "${cmd[@]}" >/dev/null 2>"$WORK/run.log" ||
      { cat "$WORK/run.log" >&2; die "$PROVIDER run $node failed"; }
  done
  for node in "${NODES[@]}"; do
    local deadline=$((SECONDS + 60))
    until $PROVIDER exec "$node" ctr version >/dev/null 2>&1; do
      # a node that stopped (an interrupt reaches it through the docker CLI) will not come back
      [ "$($PROVIDER inspect -f '{{.State.Running}}' "$node" 2>/dev/null)" = true ] ||
        { $PROVIDER logs --tail 30 "$node" >&2; die "node $node is not running"; }
      [ $SECONDS -lt $deadline ] || { $PROVIDER logs --tail 30 "$node" >&2; die "containerd in $node did not answer within 60 s"; }
      sleep 0.2
    done
  done
  CLUSTER=$name
}

remove_cluster() {
  $PROVIDER rm -f -v "${NODES[@]}" >/dev/null 2>&1 || true
}

network_seq=0
# new_network: a user-defined network, as kind's `kind` network; sets NETWORK
new_network() {
  network_seq=$((network_seq + 1))
  NETWORK=$PREFIX-net$network_seq
  $PROVIDER network create --label "$LABEL" "$NETWORK" >/dev/null
}

remove_network() {
  $PROVIDER network rm "$NETWORK" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------------
# Images: random data FROM scratch, one COPY per layer.

# make_context DIR LAYERS LAYER_MB TOP_MB: files l1..lN and top.bin, and a Dockerfile.
make_context() {
  local dir=$1 layers=$2 layer_mb=$3 top_mb=$4 i
  mkdir -p "$dir"
  echo "FROM scratch" >"$dir/Dockerfile"
  for ((i = 1; i <= layers; i++)); do
    head -c "${layer_mb}M" /dev/urandom >"$dir/l$i"
    echo "COPY l$i /l$i" >>"$dir/Dockerfile"
  done
  head -c "${top_mb}M" /dev/urandom >"$dir/top.bin"
  echo "COPY top.bin /top.bin" >>"$dir/Dockerfile"
}

# engine SOURCE ARGS...: the CLI of an image source
engine() {
  local source=$1
  shift
  case $source in
    docker) docker "$@" ;;
    containerd-store) docker --host "$STORE_HOST" "$@" ;;
    podman) podman "$@" ;;
  esac
}

# build_image DIR TAG [NEW_TOP_MB [SOURCE]]: (re)builds; with NEW_TOP_MB the top layer gets new
# random bytes first, so only that layer changes (the others come from the build cache).
# A build that fails is tried twice more: Podman 4.3's build cache lookup fails with "layer
# not known" when another process removes an image meanwhile (seen with tests running).
build_image() {
  local dir=$1 tag=$2 source=${4:-docker} attempt
  [ -z "${3:-}" ] || head -c "${3}M" /dev/urandom >"$dir/top.bin"
  for attempt in 1 2 3; do
    # quiet unless it fails (the legacy builder warns on stderr at every build)
    engine "$source" build -q --label "$LABEL" -t "$tag" "$dir" >"$WORK/build.log" 2>&1 && return 0
    log "$source build -t $tag failed (attempt $attempt of 3): $(tail -n 1 "$WORK/build.log")"
    sleep 1
  done
  cat "$WORK/build.log" >&2
  die "$source build -t $tag failed"
}

# What the kubelet resolves a reference to.
normalize() {
  local ref=$1 first=${1%%/*}
  if [[ $ref != */* ]]; then
    ref=docker.io/library/$ref
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    ref=docker.io/$ref
  fi
  [[ ${ref##*/} == *:* || $ref == *@* ]] || ref=$ref:latest
  printf '%s' "$ref"
}

# expected_id SOURCE IMAGE: the id CRI must report (the config digest) where the engine says it
# plainly; empty for the containerd store, whose .Id is the manifest digest.
expected_id() {
  case $1 in
    docker) docker image inspect -f '{{.Id}}' "$2" ;;
    podman) printf 'sha256:%s' "$(podman image inspect -f '{{.Id}}' "$2")" ;;
    *) ;;
  esac
}

LOCAL_FLAG=()
[[ $containerd == 2.* ]] && LOCAL_FLAG=(--local)

# ---------------------------------------------------------------------------------------------
# kind's algorithm (sigs.k8s.io/kind pkg/cmd/kind/load/docker-image and nodeutils), as the
# commands it runs. crictl is absent on the test nodes; its `crictl inspecti <image>` (one exec
# per node, sequential) becomes one `ctr images ls` per node that lists the name and the
# image-id record CRI keeps, and compares their targets.

KIND_TAR_BYTES=0
KIND_TMP=$WORK/kind-tmp
mkdir -p "$KIND_TMP"

kind_load() { # IMAGE CLUSTER
  local image=$1 cluster=$2 ref id node
  ref=$(normalize "$image")
  id=$(docker image inspect -f '{{ .Id }}' "$image")
  local nodes=() candidates=()
  mapfile -t nodes < <(docker ps -a --filter "label=io.x-k8s.kind.cluster=$cluster" --format '{{.Names}}')
  for node in "${nodes[@]}"; do
    if docker exec "$node" ctr -n k8s.io images ls "name==$ref" "name==$id" 2>/dev/null |
      awk -v ref="$ref" -v id="$id" '$1 == ref { a = $3 } $1 == id { b = $3 } END { exit !(a != "" && a == b) }'; then
      continue # the node has it: kind skips it
    fi
    candidates+=("$node")
  done
  KIND_TAR_BYTES=0
  [ ${#candidates[@]} -gt 0 ] || return 0
  save_and_import docker "$image" "${candidates[@]}"
}

# save_and_import SOURCE IMAGE NODE...: kind's export (`save -o`, whose size goes to
# KIND_TAR_BYTES) and every NODE's import of it at once, on PROVIDER
save_and_import() {
  local source=$1 image=$2 dir node pids=() rc=0
  shift 2
  dir=$(mktemp -d "$KIND_TMP/images-tar.XXXXXX")
  engine "$source" save -o "$dir/images.tar" "$image"
  KIND_TAR_BYTES=$(stat -c %s "$dir/images.tar")
  for node in "$@"; do
    (
      $PROVIDER exec "$node" containerd config dump >/dev/null # kind reads the snapshotter from it
      $PROVIDER exec -i "$node" ctr --namespace=k8s.io images import "${LOCAL_FLAG[@]}" \
        --all-platforms --digests --snapshotter="$snapshotter" - <"$dir/images.tar" >/dev/null
    ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  rm -rf "$dir"
  return $rc
}

# run_kind CASE ROUND IMAGE CLUSTER
run_kind() {
  local t0 t1
  t0=$(now)
  kind_load "$3" "$4" || die "kind pipeline failed for case $1"
  t1=$(now)
  record "$1" kind "$2" "$(elapsed "$t0" "$t1")" "\"temp_bytes\": $KIND_TAR_BYTES, \"nodes\": ${#NODES[@]}"
}

# ---------------------------------------------------------------------------------------------
# kindload, timed by bench/measure.py, which also samples the temporary files it holds.
# Its state (the registry CA, the record of loaded images) stays in the work directory.

KL_TMP=$WORK/kindload-tmp
KL_STATE=$WORK/kindload-state
CONTAINERS_CONF_FILE=$WORK/containers.conf # for the registries kindload runs on Podman
printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n\n[engine]\nruntime = "runc"\n' \
  >"$CONTAINERS_CONF_FILE"
# CI and KINDLOAD_PUSH decide kindload's push: unset unless a case sets them
KL_ENV=(-u CI -u KINDLOAD_PUSH KINDLOAD_STATE_DIR="$KL_STATE" CONTAINERS_CONF="$CONTAINERS_CONF_FILE") # cases set more
KL_SOURCE=docker  # the engine kindload reads images from (for the verification)
KL_FIELDS=        # more JSON fields for the record

# run_kindload CASE ROUND IMAGE CLUSTER [kindload args]
run_kindload() {
  local case=$1 round=$2 image=$3 cluster=$4
  shift 4
  rm -rf "$KL_TMP" && mkdir -p "$KL_TMP"
  env "${KL_ENV[@]}" python3 "$BENCH_DIR/measure.py" --tmpdir "$KL_TMP" --out "$WORK/m.json" \
    --stdout "$WORK/kl.out" --stderr "$WORK/kl.err" -- \
    "$KINDLOAD" load "$image" --cluster "$cluster" --output json "$@"
  if ! python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["exit"])' "$WORK/m.json"; then
    cat "$WORK/kl.err" >&2
    die "kindload failed for case $case"
  fi
  # every node must answer to the normalized name with the expected id: the report's proof
  python3 "$BENCH_DIR/report.py" check "$WORK/kl.out" "$(normalize "$image")" \
    "$(expected_id "$KL_SOURCE" "$image")" "${NODES[@]}" ||
    { cat "$WORK/kl.err" >&2; die "kindload's load was not verified on every node (case $case)"; }
  local fields
  fields=$(python3 "$BENCH_DIR/report.py" kindload-fields "$WORK/m.json" "$WORK/kl.out" "$WORK/kl.err")
  record "$case" kindload "$round" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$WORK/m.json")" \
    "$fields, \"nodes\": ${#NODES[@]}${KL_FIELDS:+, $KL_FIELDS}"
}

# run_tool TOOL CASE ROUND IMAGE CLUSTER
run_tool() {
  local tool=$1
  shift
  if [ "$tool" = kind ]; then run_kind "$@"; else run_kindload "$@"; fi
}

node_disk_bytes() { # NODE
  $PROVIDER exec "$1" du -sb /var/lib/containerd | awk '{ print $1 }'
}

# disks: every node's node_disk_bytes, comma-separated (a JSON array's inside)
disks() {
  local node out=()
  for node in "${NODES[@]}"; do out+=("$(node_disk_bytes "$node")"); done
  (IFS=,; printf '%s' "${out[*]}")
}

# ---------------------------------------------------------------------------------------------
# Registries. kindload's: `kindload registry up` (TLS, kindload's CA) on the cluster's network.
# The recipe's: kind's documented one, a plain-HTTP registry container on that network,
# published on 127.0.0.1:<port>, and on each node a hosts.toml under certs.d/localhost:<port>/
# mapping it to http://<registry container>:5000.

registry_seq=0
# kindload_registry_up: on CLUSTER/NODES; sets REG_NAME, REG_PORT and points KL_ENV at it
kindload_registry_up() {
  registry_seq=$((registry_seq + 1))
  REG_NAME=$PREFIX-klreg-$registry_seq
  REG_PORT=$(free_port)
  printf '%s %s\n' "$PROVIDER" "$REG_NAME" >>"$KL_REGISTRIES"
  kindload_registry_again
}

# kindload_registry_again: `registry up` once more (nodes recreated since)
kindload_registry_again() {
  env "${KL_ENV[@]}" KINDLOAD_REGISTRY="$REG_NAME" "$KINDLOAD" registry up --cluster "$CLUSTER" \
    --provider "$PROVIDER" --image "$REGISTRY_IMAGE" --port "$REG_PORT" >"$WORK/up.log" 2>&1 ||
    { cat "$WORK/up.log" >&2; die "kindload registry up failed"; }
}

# recipe_registry_up: on NETWORK; sets REG_NAME, REG_PORT
recipe_registry_up() {
  registry_seq=$((registry_seq + 1))
  REG_NAME=$PREFIX-reg$registry_seq
  REG_PORT=$(free_port)
  local extra=()
  mapfile -t extra < <(podman_run_args)
  $PROVIDER run --detach --name "$REG_NAME" --label "$LABEL" --network "$NETWORK" \
    -p "127.0.0.1:$REG_PORT:5000" "${extra[@]}" "$REGISTRY_IMAGE" >/dev/null 2>"$WORK/run.log" ||
    { cat "$WORK/run.log" >&2; die "$PROVIDER run $REG_NAME failed"; }
  local deadline=$((SECONDS + 30))
  until curl -fsS --max-time 2 "http://127.0.0.1:$REG_PORT/v2/" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { $PROVIDER logs --tail 20 "$REG_NAME" >&2; die "registry $REG_NAME did not answer on 127.0.0.1:$REG_PORT"; }
    sleep 0.2
  done
}

# recipe_hosts: kind's hosts.toml on every node of NODES
recipe_hosts() {
  local node dir="$CONFIG_PATH/localhost:$REG_PORT"
  for node in "${NODES[@]}"; do
    printf '[host."http://%s:5000"]\n' "$REG_NAME" |
      $PROVIDER exec -i "$node" sh -c "mkdir -p '$dir' && cat > '$dir/hosts.toml'"
  done
}

# recipe_push SOURCE IMAGE: the engine tags IMAGE as localhost:<port>/IMAGE and pushes it;
# Docker treats 127.0.0.0/8 as an insecure registry, so plain HTTP needs no setting; Podman
# needs --tls-verify=false.
recipe_push() {
  local source=$1 ref=localhost:$REG_PORT/$2
  case $source in
    podman) podman push -q --tls-verify=false "$ref" >"$WORK/push.log" 2>&1 ;;
    *) engine "$source" push -q "$ref" >"$WORK/push.log" 2>&1 ;;
  esac || { cat "$WORK/push.log" >&2; die "$source push $ref failed"; }
}

# recipe_pull IMAGE [check]: every node pulls localhost:<port>/IMAGE at once, as `crictl pull`
# would through config_path (the test nodes have no crictl: ctr with --hosts-dir stands in);
# with check, each node then lists its record of the image in the same exec
recipe_pull() {
  local ref=localhost:$REG_PORT/$1 node pids=() rc=0 i=0 check=${2:-}
  for node in "${NODES[@]}"; do
    i=$((i + 1))
    if [ -n "$check" ]; then
      # shellcheck disable=SC2016 # expanded by the node's shell
      $PROVIDER exec "$node" sh -c 'ctr -n k8s.io images pull --hosts-dir "$1" "$2" >/dev/null && ctr -n k8s.io images ls "name==$2"' \
        check "$CONFIG_PATH" "$ref" >"$WORK/pull$i.log" 2>&1 &
    else
      $PROVIDER exec "$node" ctr -n k8s.io images pull --hosts-dir "$CONFIG_PATH" "$ref" >"$WORK/pull$i.log" 2>&1 &
    fi
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  [ $rc = 0 ] || { cat "$WORK"/pull*.log >&2; die "a node failed to pull $ref"; }
}

# run_recipe CASE ROUND SOURCE IMAGE: tag (untimed, a user builds under the registry's name),
# then push + pulls, timed
run_recipe() {
  local case=$1 round=$2 source=$3 image=$4 t0 t1 t2
  engine "$source" tag "$image" "localhost:$REG_PORT/$image"
  t0=$(now)
  recipe_push "$source" "$image"
  t1=$(now)
  recipe_pull "$image"
  t2=$(now)
  record "$case" recipe "$round" "$(elapsed "$t0" "$t2")" \
    "\"source\": \"$source\", \"push_seconds\": $(elapsed "$t0" "$t1"), \"pull_seconds\": $(elapsed "$t1" "$t2"), \"nodes\": ${#NODES[@]}, \"transport\": \"push+pull\""
}

# run_checked CASE ROUND SOURCE IMAGE: the recipe plus the least a load that keeps the user's
# name and proves every node holds it must add: the image and the cluster's nodes looked up,
# the user's name given the registry name, and each node's record read back after its pull,
# in the pull's exec. kindload does this and more (trust, names, id, superseded), so it
# measures how far kindload is from the floor of what it promises rather than from the recipe.
run_checked() {
  local case=$1 round=$2 source=$3 image=$4 t0 t1
  t0=$(now)
  engine "$source" image inspect "$image" >/dev/null
  $PROVIDER ps --all --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}' >/dev/null
  $PROVIDER inspect "${NODES[@]}" >/dev/null
  engine "$source" tag "$image" "localhost:$REG_PORT/$image"
  recipe_push "$source" "$image"
  recipe_pull "$image" check
  t1=$(now)
  record "$case" checked "$round" "$(elapsed "$t0" "$t1")" \
    "\"source\": \"$source\", \"nodes\": ${#NODES[@]}, \"transport\": \"push+pull+check\""
}

# set_source SOURCE: the node provider and kindload's environment and flags for an image source.
# The containerd-store daemon is reached through DOCKER_HOST, which kindload would also take
# for its docker provider, so that source's nodes run on Podman (as in tests/).
KL_ARGS=()
set_source() {
  KL_SOURCE=$1
  KL_ENV=(-u CI -u KINDLOAD_PUSH KINDLOAD_STATE_DIR="$KL_STATE" CONTAINERS_CONF="$CONTAINERS_CONF_FILE")
  KL_FIELDS="\"source\": \"$1\""
  PROVIDER=docker
  KL_ARGS=()
  case $1 in
    podman) KL_ARGS=(--engine podman) ;;
    containerd-store)
      PROVIDER=podman
      KL_ARGS=(--provider podman)
      KL_ENV+=(DOCKER_HOST="$STORE_HOST")
      ;;
  esac
}

reset_source() {
  set_source docker
  KL_ARGS=()
  KL_FIELDS=
}

# 8. One side of the registry cases for one source, on fresh clusters of 3 nodes:
#   reg_first_empty  first load, empty registry
#   reg_reload_1mb   the 1 MiB top layer changed, same tag, same cluster
#   reg_noop         the same image again
#   reg_first_base   first load into fresh nodes, the registry already holding the base layers
#                    (an image sharing the 4 big layers, another top layer, pushed before, untimed)
# registry_side SIDE SOURCE ROUND
registry_side() {
  local side=$1 source=$2 round=$3
  set_source "$source"
  new_network
  new_cluster 3 "$NETWORK"
  if [ "$side" = recipe ]; then
    recipe_registry_up
    recipe_hosts
    run_recipe reg_first_empty "$round" "$source" "$REG"
    build_image "$WORK/ctx-reg" "$REG" "$app_mb" "$source"
    run_recipe reg_reload_1mb "$round" "$source" "$REG"
    run_recipe reg_noop "$round" "$source" "$REG"
    build_image "$WORK/ctx-reg" "$REG" "$app_mb" "$source"
    run_checked reg_reload_1mb "$round" "$source" "$REG"
    run_checked reg_noop "$round" "$source" "$REG"
  else
    kindload_registry_up
    KL_ENV+=(KINDLOAD_REGISTRY="$REG_NAME")
    run_kindload reg_first_empty "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
    build_image "$WORK/ctx-reg" "$REG" "$app_mb" "$source"
    run_kindload reg_reload_1mb "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
    run_kindload reg_noop "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
  fi
  remove_cluster
  [ "$side" = recipe ] || remove_kindload_registry "$PROVIDER" "$REG_NAME"
  [ "$side" != recipe ] || $PROVIDER rm -f -v "$REG_NAME" >/dev/null 2>&1
  remove_network

  # the registry holds the base layers: REG_BASE shares them, with its own top layer
  build_image "$WORK/ctx-reg" "$REG_BASE" "$app_mb" "$source"
  set_source "$source"
  new_network
  if [ "$side" = recipe ]; then
    recipe_registry_up
    engine "$source" tag "$REG_BASE" "localhost:$REG_PORT/$REG_BASE"
    recipe_push "$source" "$REG_BASE"
    new_cluster 3 "$NETWORK"
    recipe_hosts
    run_recipe reg_first_base "$round" "$source" "$REG"
  else
    # kindload loads REG_BASE as it loads anything (through the registry, if that is how it
    # loads, so the registry holds the base layers in the form kindload pushes them), then
    # the nodes are made again, empty, and `registry up` configures them
    new_cluster 3 "$NETWORK"
    kindload_registry_up
    KL_ENV+=(KINDLOAD_REGISTRY="$REG_NAME")
    env "${KL_ENV[@]}" "$KINDLOAD" load --cluster "$CLUSTER" --output json "${KL_ARGS[@]}" "$REG_BASE" \
      >"$WORK/base.json" 2>"$WORK/base.log" || { cat "$WORK/base.log" >&2; die "kindload load $REG_BASE failed"; }
    local base_transport
    base_transport=$(python3 "$BENCH_DIR/report.py" transport "$WORK/base.json")
    remove_cluster
    start_nodes "$CLUSTER" 3 "$NETWORK"
    kindload_registry_again
    KL_FIELDS+=", \"base_transport\": \"$base_transport\""
    run_kindload reg_first_base "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
  fi
  remove_cluster
  [ "$side" = recipe ] || remove_kindload_registry "$PROVIDER" "$REG_NAME"
  [ "$side" != recipe ] || $PROVIDER rm -f -v "$REG_NAME" >/dev/null 2>&1
  remove_network
  reset_source
}

# ---------------------------------------------------------------------------------------------
# 10. The push to the registry, per source, on fresh clusters of 3 nodes, with the image of
# case 8 (rebuilt in each source's store):
#   push_first        first load: kind's algorithm (the source's save, every node's import);
#                     kindload through an empty registry by the push it picks; kindload by the
#                     other push (KINDLOAD_PUSH: own, for Podman engine); the recipe (its push
#                     and the pulls)
#   push_reload       the 1 MiB top layer changed, same tag: the recipe and kindload
#   push_again        the unchanged image pushed again for a node that lost it: the blobs the
#                     registry's access log shows uploaded
# Source docker-ci is Docker's classic store with CI=true for kindload; its kind and recipe
# sides are docker's.

# blob_uploads: blob uploads the registry REG_NAME completed, from its access log (read after
# a moment: the engine copies the log from the container)
blob_uploads() {
  sleep 1
  $PROVIDER logs "$REG_NAME" 2>&1 | grep -c '"PUT /v2/[^ ]*/blobs/uploads/' || true
}

# forget IMAGE NODE: every name of IMAGE and every id record on NODE, as `crictl rmi` does
forget() {
  local repo=${1%%:*} name
  for name in $($PROVIDER exec "$2" ctr -n k8s.io images ls -q); do
    [[ $name == *"$repo"* || $name == sha256:* ]] || continue
    $PROVIDER exec "$2" ctr -n k8s.io images rm --sync "$name" >/dev/null
  done
}

# push_side SIDE SOURCE ROUND; SIDE: kind, recipe, kindload (its own pick) or other
push_side() {
  local side=$1 source=$2 round=$3 engine_source=${2%-ci} t0 t1 before other
  set_source "$engine_source"
  KL_FIELDS="\"source\": \"$source\""
  [ "$source" != docker-ci ] || KL_ENV+=(CI=true)
  case $side in
    kind)
      new_cluster 3
      t0=$(now)
      save_and_import "$engine_source" "$REG" "${NODES[@]}" || die "kind's algorithm failed ($source)"
      t1=$(now)
      record push_first kind "$round" "$(elapsed "$t0" "$t1")" "$KL_FIELDS, \"nodes\": ${#NODES[@]}"
      remove_cluster
      ;;
    recipe)
      new_network
      new_cluster 3 "$NETWORK"
      recipe_registry_up
      recipe_hosts
      run_recipe push_first "$round" "$engine_source" "$REG"
      build_image "$WORK/ctx-reg" "$REG" "$app_mb" "$engine_source"
      run_recipe push_reload "$round" "$engine_source" "$REG"
      $PROVIDER rm -f -v "$REG_NAME" >/dev/null 2>&1
      ;;
    kindload | other)
      new_network
      new_cluster 3 "$NETWORK"
      kindload_registry_up
      KL_ENV+=(KINDLOAD_REGISTRY="$REG_NAME")
      if [ "$side" = other ]; then
        # the push kindload does not pick for a first load (Podman's first is its own)
        other=own
        [ "$source" != podman ] || other=engine
        KL_ENV+=(KINDLOAD_PUSH=$other)
        run_kindload push_first_other "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
      else
        run_kindload push_first "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
        build_image "$WORK/ctx-reg" "$REG" "$app_mb" "$engine_source"
        run_kindload push_reload "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
        forget "$REG" "${NODES[2]}"
        before=$(blob_uploads)
        run_kindload push_again "$round" "$REG" "$CLUSTER" "${KL_ARGS[@]}"
        record push_again_uploads kindload "$round" 0 "$KL_FIELDS, \"uploads\": $(($(blob_uploads) - before))"
      fi
      remove_kindload_registry "$PROVIDER" "$REG_NAME"
      ;;
  esac
  [ "$side" = kind ] || { remove_cluster; remove_network; }
  reset_source
}

# ---------------------------------------------------------------------------------------------
# 9. Parallel loads: three loads started at once into 3 fresh nodes, of three images built FROM
# one base no node holds (what Tilt does on the first `tilt up`), by sideload.

PAR_BASE=kindload-bench-$$/par:base
PAR_IMAGES=(kindload-bench-$$/par1:v1 kindload-bench-$$/par2:v1 kindload-bench-$$/par3:v1)
PAR_LIMIT=300 # seconds; a run still going then is counted as hung and killed

build_parallel_images() {
  local i
  mkdir -p "$WORK/ctx-par-base"
  head -c "${par_base_mb}M" /dev/urandom >"$WORK/ctx-par-base/base.bin"
  printf 'FROM scratch\nCOPY base.bin /base.bin\n' >"$WORK/ctx-par-base/Dockerfile"
  build_image "$WORK/ctx-par-base" "$PAR_BASE"
  for i in 0 1 2; do
    mkdir -p "$WORK/ctx-par-$i"
    printf 'FROM %s\nCOPY top.bin /top.bin\n' "$PAR_BASE" >"$WORK/ctx-par-$i/Dockerfile"
    build_image "$WORK/ctx-par-$i" "${PAR_IMAGES[$i]}" "$par_app_mb"
  done
}

# parallel_round CASE TOOL ROUND: the three loads at once on a fresh cluster; records the wall
# time, and for kindload the runs that hung, the reports that do not prove the right id on every
# node, the leftovers (import-* records, ingests in progress, the survey lock, layer claims and run
# registrations in /run/kindload) and the most bytes
# any node received.
parallel_round() {
  local case=$1 tool=$2 round=$3 i node pids=() hung=0 wrong=0 leftovers=0 rc t0 t1 most=0 cpu0 cpu1
  new_cluster 3
  cpu0=$(busy_seconds)
  t0=$(now)
  for i in 0 1 2; do
    if [ "$tool" = kind ]; then
      (kind_load "${PAR_IMAGES[$i]}" "$CLUSTER") >"$WORK/par-$i.out" 2>"$WORK/par-$i.err" &
    else
      env "${KL_ENV[@]}" timeout -s KILL "$PAR_LIMIT" "$KINDLOAD" load "${PAR_IMAGES[$i]}" --cluster "$CLUSTER" \
        --output json >"$WORK/par-$i.out" 2>"$WORK/par-$i.err" &
    fi
    pids+=($!)
  done
  for i in 0 1 2; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    if [ "$rc" = 137 ]; then
      hung=$((hung + 1))
    elif [ "$rc" != 0 ]; then
      cat "$WORK/par-$i.err" >&2
      [ "$tool" = kindload ] || die "kind's algorithm failed in case $case"
      wrong=$((wrong + 1))
    fi
  done
  t1=$(now)
  cpu1=$(busy_seconds)
  if [ "$tool" = kindload ]; then
    for i in 0 1 2; do
      [ -s "$WORK/par-$i.out" ] || continue
      python3 "$BENCH_DIR/report.py" check "$WORK/par-$i.out" "$(normalize "${PAR_IMAGES[$i]}")" \
        "$(expected_id docker "${PAR_IMAGES[$i]}")" "${NODES[@]}" 2>>"$WORK/par-check.log" || wrong=$((wrong + 1))
    done
    most=$(python3 "$BENCH_DIR/report.py" node-bytes "$WORK"/par-[012].out)
    for node in "${NODES[@]}"; do
      leftovers=$((leftovers + $(docker exec "$node" ctr -n k8s.io images ls -q | grep -c '^import-' || true)))
      leftovers=$((leftovers + $(docker exec "$node" ctr -n k8s.io content active | tail -n +2 | grep -c . || true)))
      leftovers=$((leftovers + $(docker exec "$node" sh -c 'cd /run/kindload 2>/dev/null && ls -d import.lock claims/* runs/* 2>/dev/null' | grep -c . || true)))
    done
  fi
  record "$case" "$tool" "$round" "$(elapsed "$t0" "$t1")" \
    "\"cpu_s\": $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }'), \"nodes\": ${#NODES[@]}, \"hung\": $hung, \"wrong\": $wrong, \"leftovers\": $leftovers, \"max_node_bytes\": $most, \"base_mib\": $par_base_mb, \"app_mib\": $par_app_mb"
  remove_cluster
}

# ---------------------------------------------------------------------------------------------

BIG=kindload-bench-$$/app:v1
GROWTH=kindload-bench-$$/growth:v1
TAGGED=kindload-bench-$$/tagged # case 4b: a new tag per build, as Skaffold and Tilt deploy
RSS=kindload-bench-$$/big:v1
REG=kindload-bench-$$/reg:v1 # case 8, in each source's own store
REG_BASE=kindload-bench-$$/reg:base

log "work dir $WORK; containerd $containerd nodes; $rounds round(s)$([ "$quick" = 1 ] && echo ', quick'); cases $cases$(by_source && echo "; sources $sources")"
if selected kind || selected floor || by_source; then
  log "building images: $big_layers x $big_layer_mb MiB + $app_mb MiB"
  make_context "$WORK/ctx-big" "$big_layers" "$big_layer_mb" "$app_mb"
  if selected kind || selected floor; then build_image "$WORK/ctx-big" "$BIG"; fi
fi
if selected rss; then
  log "building images: $rss_layers x $rss_layer_mb MiB + 1 MiB"
  make_context "$WORK/ctx-rss" "$rss_layers" "$rss_layer_mb" 1
  build_image "$WORK/ctx-rss" "$RSS"
  rm -f "$WORK"/ctx-rss/l* # the image is built; the context is not needed again
fi
if by_source; then
  # the same big layers as case 1's image, a top layer of its own; built in every source
  mkdir -p "$WORK/ctx-reg"
  ln "$WORK"/ctx-big/l* "$WORK"/ctx-big/Dockerfile "$WORK/ctx-reg/"
  head -c "${app_mb}M" /dev/urandom >"$WORK/ctx-reg/top.bin"
  for source in "${SOURCES[@]}"; do
    log "building $REG in $source"
    build_image "$WORK/ctx-reg" "$REG" "" "$source"
  done
fi

if selected parallel; then
  log "building images: $par_base_mb MiB base, three apps of $par_app_mb MiB on it"
  build_parallel_images
fi

for ((round = 1; round <= rounds; round++)); do
  if ((round % 2)); then order=(kind kindload); else order=(kindload kind); fi
  if selected kind; then
    log "round $round/$rounds: ${order[*]}"
    for tool in "${order[@]}"; do
      # 1. first load into 1 node, then into 3 nodes; each on a fresh cluster
      new_cluster 1
      run_tool "$tool" first_load_1node "$round" "$BIG" "$CLUSTER"
      remove_cluster
      new_cluster 3
      run_tool "$tool" first_load_3nodes "$round" "$BIG" "$CLUSTER"
      # 2. reload after a change of the 1 MiB top layer only
      build_image "$WORK/ctx-big" "$BIG" "$app_mb"
      run_tool "$tool" reload_1mb_change "$round" "$BIG" "$CLUSTER"
      # 3. no-op reload
      run_tool "$tool" noop_reload "$round" "$BIG" "$CLUSTER"
      remove_cluster
      log "  $tool: first loads, reload, no-op done"
    done
  fi

  if selected parallel; then
    log "round $round/$rounds: three parallel loads, ${order[*]}"
    for tool in "${order[@]}"; do parallel_round parallel_3loads "$tool" "$round"; done
  fi

  if selected registry; then
    # 8. kind's registry recipe against kindload, per source; which side goes first alternates
    i=0
    for source in "${SOURCES[@]}"; do
      if (((round + i) % 2)); then sides=(recipe kindload); else sides=(kindload recipe); fi
      i=$((i + 1))
      for side in "${sides[@]}"; do
        registry_side "$side" "$source" "$round"
      done
      log "  registry cases, $source: ${sides[*]} done"
    done
  fi

  if selected push; then
    # 10. the push to the registry, per source; the order of the sides alternates
    i=0
    for source in "${SOURCES[@]}" $([[ ",$sources," == *",docker,"* ]] && echo docker-ci); do
      if (((round + i) % 2)); then sides=(kind recipe kindload other); else sides=(other kindload recipe kind); fi
      i=$((i + 1))
      for side in "${sides[@]}"; do
        # docker-ci's kind and recipe sides are docker's, its other push docker's pick
        [ "$source" = docker-ci ] && [[ $side != kindload ]] && continue
        push_side "$side" "$source" "$round"
      done
      log "  push cases, $source: done"
    done
  fi

  if selected floor; then
    # 7. floor of a first load: docker save alone, then the concurrent imports of that archive
    mkdir -p "$WORK/floor"
    t0=$(now)
    docker save -o "$WORK/floor/images.tar" "$BIG"
    t1=$(now)
    record floor_save floor "$round" "$(elapsed "$t0" "$t1")" "\"temp_bytes\": $(stat -c %s "$WORK/floor/images.tar")"
    new_cluster 3
    t0=$(now)
    pids=()
    for node in "${NODES[@]}"; do
      docker exec -i "$node" ctr --namespace=k8s.io images import "${LOCAL_FLAG[@]}" \
        --all-platforms --digests --snapshotter="$snapshotter" - <"$WORK/floor/images.tar" >/dev/null &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "floor import failed"; done
    t1=$(now)
    record floor_import floor "$round" "$(elapsed "$t0" "$t1")" "\"nodes\": ${#NODES[@]}"
    remove_cluster
    rm -rf "$WORK/floor"
    log "  floor done"
  fi

  if selected rss; then
    # 5. kindload's own peak RSS, 1 GiB image, first load into 3 nodes; again with the
    # cluster's registry up (kindload then loads the way it does when there is one)
    new_cluster 3
    run_kindload rss_first_load_1gib "$round" "$RSS" "$CLUSTER" -v
    remove_cluster
    if [ "$with_registry" = 1 ]; then
      new_network
      new_cluster 3 "$NETWORK"
      kindload_registry_up
      KL_ENV+=(KINDLOAD_REGISTRY="$REG_NAME")
      run_kindload rss_first_load_1gib_registry "$round" "$RSS" "$CLUSTER" -v
      remove_cluster
      remove_kindload_registry "$PROVIDER" "$REG_NAME"
      remove_network
      reset_source
    fi
    log "  peak RSS done"
  fi
done

if selected parallel && [ "$soak" -gt 0 ]; then
  # 9b. the same three parallel loads, kindload alone, round after round on fresh clusters
  log "parallel soak: $soak rounds of three parallel loads"
  for ((i = 1; i <= soak; i++)); do parallel_round parallel_soak kindload "$i"; done
fi

if selected growth; then
  # 4. node disk growth over repeated reloads of an image whose top layer changes every time;
  # kindload also with the cluster's registry up
  log "disk growth: $growth_reloads reloads of $growth_base_mb MiB + $growth_top_mb MiB (changing), per tool"
  make_context "$WORK/ctx-growth" 1 "$growth_base_mb" "$growth_top_mb"
  tools=(kind kindload)
  [ "$with_registry" = 0 ] || tools+=(kindload+registry)
  for tool in "${tools[@]}"; do
    if [ "$tool" = kindload+registry ]; then
      new_network
      new_cluster 3 "$NETWORK"
      kindload_registry_up
      KL_ENV+=(KINDLOAD_REGISTRY="$REG_NAME")
      KL_FIELDS="\"registry\": true"
    else
      new_cluster 3
    fi
    before=$(disks)
    for ((i = 1; i <= growth_reloads; i++)); do
      build_image "$WORK/ctx-growth" "$GROWTH" "$growth_top_mb"
      if [ "$tool" = kindload+registry ]; then
        run_kindload growth_reload_registry "$i" "$GROWTH" "$CLUSTER"
      else
        run_tool "$tool" growth_reload "$i" "$GROWTH" "$CLUSTER"
      fi
      if [ "$i" = 1 ]; then
        sleep 2 # let containerd's garbage collector settle before measuring
        first=$(disks)
      fi
    done
    sleep 2
    after=$(disks)
    printf '{"case": "disk_growth", "tool": "%s", "reloads": %s, "base_mib": %s, "top_mib": %s, "before": [%s], "after_first": [%s], "after_last": [%s]}\n' \
      "$tool" "$growth_reloads" "$growth_base_mb" "$growth_top_mb" \
      "$before" "$first" "$after" >>"$RAW"
    remove_cluster
    if [ "$tool" = kindload+registry ]; then
      remove_kindload_registry "$PROVIDER" "$REG_NAME"
      remove_network
      reset_source
    fi
    log "  $tool done"
  done
fi

if selected tags; then
  # 4b. node disk growth when every build gets a new tag (Skaffold deploys <repo>:<image id>,
  # Tilt tilt-build-<time>): nothing supersedes, so only kindload's retention (--keep,
  # default 2) bounds what the nodes hold; kind's algorithm beside it
  log "disk growth, a new tag per build: $growth_reloads builds of $growth_base_mb MiB + $growth_top_mb MiB (changing), per tool"
  make_context "$WORK/ctx-tagged" 1 "$growth_base_mb" "$growth_top_mb"
  for tool in kind kindload; do
    new_cluster 3
    before=$(disks)
    previous=
    for ((i = 1; i <= growth_reloads; i++)); do
      build_image "$WORK/ctx-tagged" "$TAGGED:b$i" "$growth_top_mb"
      run_tool "$tool" growth_tag_load "$i" "$TAGGED:b$i" "$CLUSTER"
      # the engine keeps only the newest build (untimed): the nodes are what is measured
      [ -z "$previous" ] || engine docker image rm "$previous" >/dev/null
      previous=$TAGGED:b$i
      if [ "$i" = 1 ]; then
        sleep 2 # let containerd's garbage collector settle before measuring
        first=$(disks)
      fi
    done
    sleep 2
    after=$(disks)
    engine docker image rm "$previous" >/dev/null
    printf '{"case": "disk_growth_tags", "tool": "%s", "keep": 2, "builds": %s, "base_mib": %s, "top_mib": %s, "before": [%s], "after_first": [%s], "after_last": [%s]}\n' \
      "$tool" "$growth_reloads" "$growth_base_mb" "$growth_top_mb" \
      "$before" "$first" "$after" >>"$RAW"
    remove_cluster
    log "  $tool done"
  done
fi

# ---------------------------------------------------------------------------------------------

mkdir -p "$(dirname "$results")"
BENCH_STORE_HOST=$(! uses_source containerd-store || echo "$STORE_HOST") \
  BENCH_PODMAN=$(! uses_source podman && ! uses_source containerd-store || echo 1) \
  python3 "$BENCH_DIR/report.py" summary "$RAW" "$results" \
  --containerd "$containerd" --rounds "$rounds" --quick "$quick" \
  --cases "$cases" --sources "$(by_source && echo "$sources" || echo)" \
  --big "$big_layers x $big_layer_mb MiB + $app_mb MiB" \
  --rss-image "$rss_layers x $rss_layer_mb MiB + 1 MiB" \
  --kindload-version "$("$KINDLOAD" --version 2>/dev/null || echo unknown)" \
  --commit "$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
