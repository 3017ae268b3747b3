#!/usr/bin/env bash
# Makes sure Debian's `redis-server` is installed, for the fleet-wide counting tests (the
# rate-limit-service peer keeps Limitador's counters in it), and what the peer builds
# with: `libssl-dev` and `pkg-config` (limitador's Redis client links native TLS) and
# `libclang-dev` (limitador 0.14 compiles its Redis storage only with its RocksDB disk
# storage too, whose bindings bindgen generates). Idempotent; needs root (CI runs as
# root). The tests start their own redis-server on a loopback port; the system service
# is neither needed nor started.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-redis: ${missing[*]} missing and installing needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the package from starting its own system-wide redis on port 6379.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v redis-server >/dev/null
