#!/usr/bin/env bash
# Makes sure the Envoy benchmark's tools are installed: wrk (the closed-loop load
# generator) and valgrind (callgrind counts the instructions Envoy executes per request)
# from Debian's packages, and oha (open-loop load at a fixed rate with latency
# correction, for p50/p99) from crates.io, built once with its own lock file.
# Idempotent; installing Debian's packages needs root.
set -euo pipefail

OHA_VERSION=1.16.0

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ensure-bench-tools: ${missing[*]} missing and installing needs root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(oha --version 2>/dev/null)" != "oha $OHA_VERSION" ]; then
    # About five minutes on two cores, once.
    echo "ensure-bench-tools: building oha $OHA_VERSION (cargo install)" >&2
    cargo install oha --version "=$OHA_VERSION" --locked --quiet
fi
