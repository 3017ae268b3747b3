#!/usr/bin/env bash
# Makes sure Prometheus Alertmanager (Debian's `prometheus-alertmanager`) is installed, for
# the alerting end-to-end tests. Idempotent; needs root (CI runs as root).
set -euo pipefail

if command -v prometheus-alertmanager >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-alertmanager: prometheus-alertmanager is missing and installing it needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
command -v prometheus-alertmanager >/dev/null
