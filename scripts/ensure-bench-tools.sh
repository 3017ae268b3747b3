#!/usr/bin/env bash
# Makes sure the Envoy benchmark's tools are installed: wrk (the load generator) and
# valgrind (callgrind counts the instructions Envoy executes per request), from Debian's
# packages. Idempotent; installing needs root.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-bench-tools: ${missing[*]} missing and installing needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
