#!/usr/bin/env python3
"""Shrinks a fuzz corpus to a small set of inputs with the same coverage: runs the
target's libFuzzer binary in merge mode over the corpus (its control file lists the
edges each input reaches), then picks inputs greedily, each time the one adding the
most edges not yet reached (smaller first on ties), until every edge is.
libFuzzer's own merge keeps every input that added something in size order, which keeps
several times more files than the cover needs; `make test` replays the committed corpora,
so fewer files keep that quick.

    fuzz/cover.py BINARY CORPUS_DIR OUT_DIR
"""

import os
import shutil
import subprocess
import sys
import tempfile

# What is covered: "COV", the edges reached (what libFuzzer prints as `cov`). Its
# features ("FT", `ft`) also count how often each edge ran, in buckets, so nearly every
# input has one of its own and a cover of them keeps almost the whole corpus.
KIND = "COV"


def main():
    binary, corpus, out = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as scratch:
        control = os.path.join(scratch, "control")
        empty = os.path.join(scratch, "empty")
        os.makedirs(empty)
        subprocess.run([binary, "-merge=1", "-max_len=65536", f"-merge_control_file={control}",
                        empty, corpus],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(control) as f:
            lines = f.read().splitlines()
    count = int(lines[0])
    files = lines[2:2 + count]
    features = {}
    for line in lines[2 + count:]:
        parts = line.split()
        if parts and parts[0] == KIND:
            features[int(parts[1])] = set(map(int, parts[2:]))
    size = {i: os.path.getsize(files[i]) for i in features}
    left = set().union(*features.values()) if features else set()
    chosen = []
    while left:
        best = max(features, key=lambda i: (len(features[i] & left), -size[i]))
        gain = features[best] & left
        if not gain:
            break
        chosen.append(best)
        left -= gain
    os.makedirs(out, exist_ok=True)
    for i in chosen:
        shutil.copy(files[i], os.path.join(out, os.path.basename(files[i])))
    reached = len(set().union(*features.values())) if features else 0
    print(f"{len(chosen)} of {count} inputs reach all {reached} edges")


if __name__ == "__main__":
    main()
