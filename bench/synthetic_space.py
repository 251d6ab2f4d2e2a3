#!/usr/bin/env python3
"""Writes a synthetic recorded space (T4 format) with long value lists, for measuring the agent's
cost where a point has tens of thousands of two-parameter changes (no shared space has more than
578). Two tile sizes of N values each and a flag; the time is a smooth bowl with ripples, so that
the search has a gradient to follow and local optima to leave. Deterministic: same N, same file.

  python3 bench/synthetic_space.py --values 300 --out /tmp/synthetic_sweep_T4.json.gz
"""
import argparse
import gzip
import json
import math


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--values", type=int, default=300, help="values of each tile size")
    ap.add_argument("--out", required=True, help="output file, NAME_DEVICE_T4.json.gz")
    a = ap.parse_args()
    n = a.values
    results = []
    for i in range(n):
        for j in range(n):
            for flag in (0, 1):
                x, y = i / (n - 1), j / (n - 1)
                t = 1.0 + 4 * ((x - 0.31) ** 2 + (y - 0.67) ** 2)
                t += 0.15 * (1 + math.sin(23 * x) * math.cos(17 * y))
                t *= 0.9 if flag else 1.0
                results.append({
                    "configuration": {"tile_x": 4 * (i + 1), "tile_y": 4 * (j + 1),
                                      "unroll": flag},
                    "times": {"runtimes": [round(t, 6)]},
                    "invalidity": "correct",
                    "measurements": [{"name": "time", "value": round(t, 6), "unit": "ms"}],
                    "objectives": ["time"],
                })
    doc = {"metadata": {"timeunit": "milliseconds"}, "results": results}
    with gzip.open(a.out, "wt") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main()
