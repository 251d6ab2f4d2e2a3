#!/usr/bin/env python3
"""How much does a leave-one-kernel-out result depend on which training run made the policy?

Under `ktune bench search --protocol leave-one-kernel-out --train-seeds N`, run seed s starts
from the fold's policy of training seed (s - 1) mod N + 1, so a row mixes N training runs. This
script splits the `ppo` runs of the per-run lines (`--json`'s stderr lines with
`evals_to_5pct_runs`) by training seed and prints, per training seed, the median over spaces of
the per-space medians, and each space's median. Some spread comes from the run seeds alone (each
group is a few runs per space), so it also splits each space's runs into groups of the same sizes
at random (--permutations times) and says how often the largest minus the smallest group median
is at least the observed one: a small share means the training runs differ. Give each file with
the first run seed of its runs (`--first-seed`), as FILE:FIRST. Standard library only.

    python3 bench/training_seed_spread.py --train-seeds 6 \\
        search-loko24-2026-12-05-rank-adopted-seeds1-24.agent.jsonl:1 \\
        search-2026-12-05-rank-adopted-seeds25-48.agent.jsonl:25 \\
        --only ../shared/datasets/spaces/*.json.gz
"""

import argparse
import collections
import json
import os
import random
import statistics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="FILE:FIRST_RUN_SEED")
    parser.add_argument("--train-seeds", type=int, required=True)
    parser.add_argument("--strategy", default="ppo")
    parser.add_argument("--only", nargs="*", help="keep these spaces (base names of files)")
    parser.add_argument("--permutations", type=int, default=2000)
    args = parser.parse_args()
    only = {os.path.basename(f) for f in args.only} if args.only else None
    runs = collections.defaultdict(list)  # (space, training seed) -> evaluations
    for spec in args.files:
        path, _, first = spec.rpartition(":")
        if not path:
            parser.error(f"{spec}: give FILE:FIRST_RUN_SEED")
        with open(path) as lines:
            for line in lines:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(row, dict) or row.get("strategy") != args.strategy:
                    continue
                if "evals_to_5pct_runs" not in row or (only and row["space"] not in only):
                    continue
                for k, evals in enumerate(row["evals_to_5pct_runs"]):
                    seed = (int(first) + k - 1) % args.train_seeds + 1
                    runs[(row["space"], seed)].append(evals)
    spaces = sorted({space for space, _ in runs})
    seeds = [t for t in range(1, args.train_seeds + 1) if all(runs[(s, t)] for s in spaces)]

    def group_medians(groups):  # groups[(space, seed)] -> runs
        return [statistics.median([statistics.median(groups[(s, t)]) for s in spaces])
                for t in seeds]

    print(f"# {args.strategy}: per training seed, the median over {len(spaces)} spaces of each "
          "space's median evals_to_5pct, then each space's median (spaces in name order)")
    for t in seeds:
        medians = [statistics.median(runs[(s, t)]) for s in spaces]
        print(f"training seed {t}: {statistics.median(medians):7.1f}   "
              + " ".join(f"{m:.1f}" for m in medians))
    observed = group_medians(runs)
    spread = max(observed) - min(observed)
    rng = random.Random(1)
    at_least = 0
    for _ in range(args.permutations):
        shuffled = {}
        for s in spaces:
            pooled = [v for t in seeds for v in runs[(s, t)]]
            rng.shuffle(pooled)
            start = 0
            for t in seeds:
                shuffled[(s, t)] = pooled[start:start + len(runs[(s, t)])]
                start += len(runs[(s, t)])
        medians = group_medians(shuffled)
        at_least += max(medians) - min(medians) >= spread
    print(f"spread (largest - smallest training seed's median): {spread:.1f}; runs split at "
          f"random: at least as large in {at_least / args.permutations:.3f} of "
          f"{args.permutations} splits")
    print("spaces: " + " ".join(spaces))


if __name__ == "__main__":
    main()
