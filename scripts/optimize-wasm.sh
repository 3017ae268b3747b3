#!/usr/bin/env bash
# Shrinks a proxy-wasm module with binaryen's wasm-opt (Debian package `binaryen`,
# installed here when missing) and refuses a module over the size budget: every byte is
# loaded into each Envoy worker's VM.
#   scripts/optimize-wasm.sh MODULE.wasm [MAX_BYTES]
set -euo pipefail
module="$1"
max_bytes="${2:-380000}"

if ! command -v wasm-opt >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null
    else
        echo "optimize-wasm: wasm-opt is missing; install binaryen (apt-get install binaryen)" >&2
        exit 1
    fi
fi

raw=$(stat -c %s "$module")
# The features rustc enables for wasm32-wasip1; wasm-opt must keep exactly these.
wasm-opt -Oz --strip-debug --strip-producers \
    --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$module" -o "$module.opt"
mv "$module.opt" "$module"
size=$(stat -c %s "$module")
gz=$(gzip -9 -c "$module" | wc -c)
echo "stakeguard.wasm: $size bytes ($gz gzipped; $raw before wasm-opt)"
if [ "$size" -gt "$max_bytes" ]; then
    echo "optimize-wasm: $module is $size bytes, over the budget of $max_bytes" >&2
    exit 1
fi
