#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after another.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      SECONDS defaults to 60
#
# Uses cargo-fuzz (installed with `cargo install cargo-fuzz --locked` when missing) on the
# stable toolchain with RUSTC_BOOTSTRAP=1, since libFuzzer instrumentation needs nightly
# flags. A panic, an input that runs longer than FUZZ_TIMEOUT seconds (default 10), a
# process above FUZZ_RSS_MB of memory (default 2048) or a single allocation above
# FUZZ_MALLOC_MB (default 512) is a failure: libFuzzer writes the input to
# fuzz/artifacts/<target>/. Move it to fuzz/regressions/<target>/ once fixed, so that
# `cargo test --test fuzz_replay` replays it from then on. FUZZ_ARGS adds libFuzzer flags
# (e.g. FUZZ_ARGS=-max_len=65536).
#
# New inputs libFuzzer finds go to fuzz/grown/<target>/ (not committed); fuzz/corpus/<target>/
# (the curated seeds) and fuzz/regressions/<target>/ are read, never written.
set -euo pipefail

seconds=${1:-60}
shift || true
cd "$(dirname "$0")/.."

timeout_s=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
malloc_mb=${FUZZ_MALLOC_MB:-512}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -O

failed=()
for target in "${targets[@]}"; do
    dirs=("fuzz/grown/$target" "fuzz/corpus/$target")
    [ -d "fuzz/regressions/$target" ] && dirs+=("fuzz/regressions/$target")
    mkdir -p "fuzz/grown/$target"
    echo "=== $target: ${seconds}s" >&2
    started=$(date +%s)
    if cargo fuzz run -O "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout="$timeout_s" \
        -rss_limit_mb="$rss_mb" -malloc_limit_mb="$malloc_mb" -print_final_stats=1 ${FUZZ_ARGS:-}; then
        echo "=== $target: ok after $(($(date +%s) - started))s" >&2
    else
        echo "=== $target: FAILED after $(($(date +%s) - started))s; input in fuzz/artifacts/$target/" >&2
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s each without a failure" >&2
