#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the repository's own test data:
policy documents (the examples and the bad policies), recorded traffic (the harness's
test recordings and the first records of the example traffic), and exchanges (the
example recordings and the bypass corpus in the `exchange` target's format, see
targets/src/lib.rs). Fuzzing adds to these directories; `cargo fuzz cmin` trims them."""

import glob
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
POLICIES = {"bank": 0, "retailer": 1, "minimal": 2}


def write(target, data):
    os.makedirs(os.path.join(HERE, "corpus", target), exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(HERE, "corpus", target, name), "wb") as f:
        f.write(data)


def exchange(request, response=None, source=None, advance=1000):
    head = [f"{request['method']} {request.get('path') or request.get('target')}"]
    host = request.get("authority") or request.get("host")
    if host:
        head.append(f"host: {host}")
    if source:
        head.append(f":source: {source}")
    head.append(f":advance: {advance}")
    head += [f"{n}: {v}" for n, v in request.get("headers", [])]
    body = request.get("body", "")
    part = "\n".join(head).encode() + b"\xff" + body.encode()
    if response:
        lines = [str(response["status"])] + [f"{n}: {v}" for n, v in response.get("headers", [])]
        part += b"\xff" + "\n".join(lines).encode()
    return part


def main():
    for path in glob.glob(os.path.join(ROOT, "policies/examples/*.json")) + \
            glob.glob(os.path.join(ROOT, "harness/tests/data/bad-policies/[0-9]*.json")):
        write("policy", open(path, "rb").read())

    for path in ["sample.har", "bad.har", "bad.jsonl", "conformance.jsonl", "tap-buffered.json",
                 "tap-streamed.jsonl"] + [os.path.join("tap-dir", f) for f in
                                          os.listdir(os.path.join(ROOT, "harness/tests/data/tap-dir"))]:
        write("traffic", open(os.path.join(ROOT, "harness/tests/data", path), "rb").read())
    for name in POLICIES:
        path = os.path.join(ROOT, f"envoy-examples/traffic/{name}.jsonl")
        if os.path.exists(path):
            lines = open(path, "rb").read().splitlines(keepends=True)
            write("traffic", b"".join(lines[:20]))
            # Runs of eight records through the policy they were recorded for.
            records = [json.loads(l) for l in lines[:64]]
            for i in range(0, len(records), 8):
                parts = [exchange(r["request"], r.get("response"), r.get("source"))
                         for r in records[i:i + 8]]
                write("exchange", bytes([POLICIES[name]]) + b"\xfe".join(parts))

    for name in ["bank", "retailer"]:
        cases = [json.loads(l) for l in open(os.path.join(ROOT, f"tests/data/bypass/{name}.jsonl"))]
        for case in cases[::5]:
            if len(json.dumps(case)) < 4000:
                write("exchange", bytes([POLICIES[name]]) + exchange(case, {"status": 200}, "10.0.0.1"))


if __name__ == "__main__":
    main()
