#!/usr/bin/env bash
# kindload against kind's loading algorithm, written as the commands `kind load docker-image`
# runs, side by side on fresh test-bed clusters. See README.md, section "Benchmark".
#
#   bench/run.sh [--rounds N] [--containerd 1.6|1.7|2.1] [--quick] [--results FILE]
#
# Needs the test bed (run `tests/run.sh` once first): a Docker daemon and the node image
# kindload-testnode:<containerd version>. Prints a summary table and writes the raw numbers
# to bench/results/latest.json (or FILE).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$BENCH_DIR")

rounds=
containerd=2.1
quick=0
snapshotter=overlayfs
results=$BENCH_DIR/results/latest.json

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done

case $containerd in 1.6 | 1.7 | 2.1) ;; *) echo "--containerd must be 1.6, 1.7 or 2.1" >&2; exit 2 ;; esac

# Sizes in MiB.
if [ "$quick" = 1 ]; then
  : "${rounds:=1}"
  big_layers=4 big_layer_mb=10 app_mb=1 # case 1-3 and 7: 4 x 10 MiB + 1 MiB
  growth_base_mb=10 growth_top_mb=5 growth_reloads=5
  rss_layers=4 rss_layer_mb=25 # case 5: 100 MiB
else
  : "${rounds:=3}"
  big_layers=4 big_layer_mb=100 app_mb=1 # 4 x 100 MiB + 1 MiB
  growth_base_mb=100 growth_top_mb=20 growth_reloads=20
  rss_layers=8 rss_layer_mb=128 # 1 GiB
fi
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

log "building kindload (cargo build --release)"
(cd "$REPO_ROOT" && cargo build --release --locked --quiet) || die "cargo build --release failed"
KINDLOAD=$REPO_ROOT/target/release/kindload

# ---------------------------------------------------------------------------------------------
# Bookkeeping and cleanup: everything this run creates carries the label below.

OWNER_LABEL=io.kindload.bench.owner
LABEL="$OWNER_LABEL=$$"
PREFIX=kb$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kindload-bench.XXXXXX")
RAW=$WORK/raw.jsonl
: >"$RAW"
CLUSTERS=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pids
  pids=$(jobs -p)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  wait 2>/dev/null || true
  local ids
  ids=$(docker ps -aq --filter "label=$LABEL")
  [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
  ids=$(docker images -q --filter "label=$LABEL" | sort -u)
  [ -z "$ids" ] || docker rmi -f $ids >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted; cleaning up"; exit 130' INT TERM

# Leftovers of runs killed before their trap ran (owner process gone).
sweep_orphans() {
  local owner ids
  for owner in $( (docker ps -a --format "{{.Label \"$OWNER_LABEL\"}}" --filter "label=$OWNER_LABEL"
    docker images --format "{{.ID}}" --filter "label=$OWNER_LABEL" |
      xargs -r docker image inspect --format "{{index .Config.Labels \"$OWNER_LABEL\"}}") | sort -u); do
    [ -d "/proc/$owner" ] && continue
    ids=$(docker ps -aq --filter "label=$OWNER_LABEL=$owner")
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
    ids=$(docker images -q --filter "label=$OWNER_LABEL=$owner" | sort -u)
    [ -z "$ids" ] || docker rmi -f $ids >/dev/null 2>&1 || true
  done
}
sweep_orphans

now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# record CASE TOOL ROUND SECONDS [JSON fields without braces]
record() {
  local extra=${5:+, $5}
  printf '{"case": "%s", "tool": "%s", "round": %s, "seconds": %s%s}\n' "$1" "$2" "$3" "$4" "$extra" >>"$RAW"
}

# ---------------------------------------------------------------------------------------------
# Clusters: kind-like nodes as tests/support/mod.rs makes them.

cluster_seq=0
# new_cluster NODES: starts a cluster of NODES nodes (control-plane + workers); sets CLUSTER, NODES.
new_cluster() {
  local count=$1 name role node i
  cluster_seq=$((cluster_seq + 1))
  name=$PREFIX-$cluster_seq
  NODES=("$name-control-plane")
  for ((i = 1; i < count; i++)); do
    if [ "$i" = 1 ]; then NODES+=("$name-worker"); else NODES+=("$name-worker$i"); fi
  done
  for node in "${NODES[@]}"; do
    role=worker
    [[ $node == *-control-plane ]] && role=control-plane
    docker run --detach --name "$node" --hostname "$node" \
      --label "io.x-k8s.kind.cluster=$name" --label "io.x-k8s.kind.role=$role" --label "$LABEL" \
      --network none --cap-add SYS_ADMIN \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      -v /var/lib/containerd --tmpfs /run --tmpfs /tmp \
      -e "KINDLOAD_TEST_SNAPSHOTTER=$snapshotter" \
      "$NODE_IMAGE" >/dev/null
  done
  for node in "${NODES[@]}"; do
    local deadline=$((SECONDS + 60))
    until docker exec "$node" ctr version >/dev/null 2>&1; do
      # a node that stopped (an interrupt reaches it through the docker CLI) will not come back
      [ "$(docker inspect -f '{{.State.Running}}' "$node" 2>/dev/null)" = true ] ||
        { docker logs --tail 30 "$node" >&2; die "node $node is not running"; }
      [ $SECONDS -lt $deadline ] || { docker logs --tail 30 "$node" >&2; die "containerd in $node did not answer within 60 s"; }
      sleep 0.2
    done
  done
  CLUSTER=$name
}

remove_cluster() {
  docker rm -f -v "${NODES[@]}" >/dev/null 2>&1 || true
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

# build_image DIR TAG [NEW_TOP_MB]: (re)builds; with NEW_TOP_MB the top layer gets new random
# bytes first, so only that layer changes (the others come from the build cache).
build_image() {
  local dir=$1 tag=$2
  [ -z "${3:-}" ] || head -c "${3}M" /dev/urandom >"$dir/top.bin"
  # quiet unless it fails (the legacy builder warns on stderr at every build)
  docker build -q --label "$LABEL" -t "$tag" "$dir" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log" >&2; die "docker build -t $tag failed"; }
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
  local image=$1 cluster=$2 ref id node dir rc=0
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
  dir=$(mktemp -d "$KIND_TMP/images-tar.XXXXXX")
  docker save -o "$dir/images.tar" "$image"
  KIND_TAR_BYTES=$(stat -c %s "$dir/images.tar")
  local pids=()
  for node in "${candidates[@]}"; do
    (
      docker exec "$node" containerd config dump >/dev/null # kind reads the snapshotter from it
      docker exec -i "$node" ctr --namespace=k8s.io images import "${LOCAL_FLAG[@]}" \
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
# Its state (the record of loaded images) stays in the work directory.

KL_TMP=$WORK/kindload-tmp
KL_STATE=$WORK/kindload-state

# run_kindload CASE ROUND IMAGE CLUSTER [kindload args]
run_kindload() {
  local case=$1 round=$2 image=$3 cluster=$4
  shift 4
  rm -rf "$KL_TMP" && mkdir -p "$KL_TMP"
  KINDLOAD_STATE_DIR=$KL_STATE python3 "$BENCH_DIR/measure.py" --tmpdir "$KL_TMP" --out "$WORK/m.json" \
    --stdout "$WORK/kl.out" --stderr "$WORK/kl.err" -- \
    "$KINDLOAD" load "$image" --cluster "$cluster" --output json "$@"
  if ! python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["exit"])' "$WORK/m.json"; then
    cat "$WORK/kl.err" >&2
    die "kindload failed for case $case"
  fi
  # every node must answer to the normalized name with the expected id: the report's proof
  python3 "$BENCH_DIR/report.py" check "$WORK/kl.out" "$(normalize "$image")" \
    "$(docker image inspect -f '{{.Id}}' "$image")" "${NODES[@]}" ||
    { cat "$WORK/kl.err" >&2; die "kindload's load was not verified on every node (case $case)"; }
  local fields
  fields=$(python3 "$BENCH_DIR/report.py" kindload-fields "$WORK/m.json" "$WORK/kl.out" "$WORK/kl.err")
  record "$case" kindload "$round" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$WORK/m.json")" \
    "$fields, \"nodes\": ${#NODES[@]}"
}

# run_tool TOOL CASE ROUND IMAGE CLUSTER
run_tool() {
  local tool=$1
  shift
  if [ "$tool" = kind ]; then run_kind "$@"; else run_kindload "$@"; fi
}

node_disk_bytes() { # NODE
  docker exec "$1" du -sb /var/lib/containerd | awk '{ print $1 }'
}

# ---------------------------------------------------------------------------------------------

BIG=kindload-bench-$$/app:v1
GROWTH=kindload-bench-$$/growth:v1
RSS=kindload-bench-$$/big:v1

log "work dir $WORK; containerd $containerd nodes; $rounds round(s)$([ "$quick" = 1 ] && echo ', quick')"
log "building images: $big_layers x $big_layer_mb MiB + $app_mb MiB; $rss_layers x $rss_layer_mb MiB"
make_context "$WORK/ctx-big" "$big_layers" "$big_layer_mb" "$app_mb"
build_image "$WORK/ctx-big" "$BIG"
make_context "$WORK/ctx-rss" "$rss_layers" "$rss_layer_mb" 1
build_image "$WORK/ctx-rss" "$RSS"
rm -f "$WORK"/ctx-rss/l* # the image is built; the context is not needed again

for ((round = 1; round <= rounds; round++)); do
  if ((round % 2)); then order=(kind kindload); else order=(kindload kind); fi
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

  # 5. kindload's own peak RSS, 1 GiB image, first load into 3 nodes
  new_cluster 3
  run_kindload rss_first_load_1gib "$round" "$RSS" "$CLUSTER" -v
  remove_cluster
  log "  floor and peak RSS done"
done

# 4. node disk growth over repeated reloads of an image whose top layer changes every time
log "disk growth: $growth_reloads reloads of $growth_base_mb MiB + $growth_top_mb MiB (changing), per tool"
make_context "$WORK/ctx-growth" 1 "$growth_base_mb" "$growth_top_mb"
for tool in kind kindload; do
  new_cluster 3
  before=()
  for node in "${NODES[@]}"; do before+=("$(node_disk_bytes "$node")"); done
  for ((i = 1; i <= growth_reloads; i++)); do
    build_image "$WORK/ctx-growth" "$GROWTH" "$growth_top_mb"
    run_tool "$tool" growth_reload "$i" "$GROWTH" "$CLUSTER"
    if [ "$i" = 1 ]; then
      sleep 2 # let containerd's garbage collector settle before measuring
      first=()
      for node in "${NODES[@]}"; do first+=("$(node_disk_bytes "$node")"); done
    fi
  done
  sleep 2
  after=()
  for node in "${NODES[@]}"; do after+=("$(node_disk_bytes "$node")"); done
  printf '{"case": "disk_growth", "tool": "%s", "reloads": %s, "base_mib": %s, "top_mib": %s, "before": [%s], "after_first": [%s], "after_last": [%s]}\n' \
    "$tool" "$growth_reloads" "$growth_base_mb" "$growth_top_mb" \
    "$(IFS=,; echo "${before[*]}")" "$(IFS=,; echo "${first[*]}")" "$(IFS=,; echo "${after[*]}")" >>"$RAW"
  remove_cluster
  log "  $tool done"
done

# ---------------------------------------------------------------------------------------------

mkdir -p "$(dirname "$results")"
python3 "$BENCH_DIR/report.py" summary "$RAW" "$results" \
  --containerd "$containerd" --rounds "$rounds" --quick "$quick" \
  --big "$big_layers x $big_layer_mb MiB + $app_mb MiB" \
  --rss-image "$rss_layers x $rss_layer_mb MiB + 1 MiB" \
  --kindload-version "$("$KINDLOAD" --version 2>/dev/null || echo unknown)" \
  --commit "$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
