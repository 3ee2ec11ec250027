#!/usr/bin/env bash
# Builds and installs kindload, then checks that it can reach an engine and kind nodes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: cargo is needed to build kindload (https://rustup.rs)" >&2
  exit 1
fi

root="${KINDLOAD_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}"
cargo install --path . --locked --root "$root" --quiet
bin="$root/bin/kindload"
echo "installed $("$bin" --version) at $bin"
case ":$PATH:" in
  *":$root/bin:"*) ;;
  *) echo "note: $root/bin is not on PATH; add it, e.g. export PATH=\"$root/bin:\$PATH\"" ;;
esac

engines=()
for engine in docker podman; do
  if command -v "$engine" >/dev/null 2>&1; then
    if "$engine" info >/dev/null 2>&1; then
      engines+=("$engine")
    else
      echo "note: $engine is installed but does not answer (\`$engine info\` fails)"
    fi
  fi
done
if [ ${#engines[@]} -eq 0 ]; then
  echo "warning: neither docker nor podman answers; kindload needs one to find images and kind nodes"
else
  echo "engines answering: ${engines[*]}"
  nodes=0
  for engine in "${engines[@]}"; do
    count=$("$engine" ps --filter label=io.x-k8s.kind.cluster --format '{{.Names}}' 2>/dev/null | wc -l)
    nodes=$((nodes + count))
  done
  if [ "$nodes" -eq 0 ]; then
    echo "no kind nodes are running yet: create a cluster with \`kind create cluster\`"
  else
    echo "kind nodes running: $nodes"
  fi
fi

echo
echo "next: kindload doctor        # engine, cluster, nodes, and how to fix what is wrong"
echo "then: kindload load app:dev  # load and verify an image on every node"
