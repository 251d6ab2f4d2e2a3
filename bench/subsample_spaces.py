#!/usr/bin/env python3
"""Writes a random subset of each recorded space (T4 or Kernel Tuner cache), for checking that a
strategy generalises beyond the files it was developed on: the subsets have other optima, other
holes in their neighbourhoods and other landscapes. Deterministic: the draw is seeded by the
file's name.

  python3 bench/subsample_spaces.py --keep 0.6 --out /tmp/sub ../shared/datasets/spaces/*.json.gz
"""
import argparse
import gzip
import json
import os
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=float, default=0.6, help="share of configurations kept")
    ap.add_argument("--out", required=True, help="output folder (file names are kept)")
    ap.add_argument("files", nargs="+", help="recorded spaces (.json or .json.gz)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for path in a.files:
        name = os.path.basename(path)
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            doc = json.load(f)
        rnd = random.Random(name)
        if "results" in doc:  # T4
            doc["results"] = [r for r in doc["results"] if rnd.random() < a.keep]
            kept = len(doc["results"])
        else:  # Kernel Tuner cache
            doc["cache"] = {k: v for k, v in doc["cache"].items() if rnd.random() < a.keep}
            kept = len(doc["cache"])
        with opener(os.path.join(a.out, name), "wt") as f:
            json.dump(doc, f)
        print(f"{name}: {kept} configurations kept")


if __name__ == "__main__":
    main()
