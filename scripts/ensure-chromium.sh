#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed, for the browser test of `stakeguard report`
# (tests/browser/ drives it through playwright-core, which downloads no browser of its
# own). Idempotent; needs root (CI runs as root).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: chromium is missing and installing it needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
