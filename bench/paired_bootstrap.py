#!/usr/bin/env python3
"""How sure is a search benchmark's comparison? A paired bootstrap over run seeds.

`ktune bench search --json` writes, on stderr, one line per (space, strategy) with each run's
evaluations to within 5% of the optimum in run-seed order (`evals_to_5pct_runs`). Every strategy
of a benchmark runs the same seeds, so the runs of two strategies on a space pair up by position.
This script resamples the run seeds of each space with replacement (the same draw for every
strategy: paired), recomputes each strategy's per-space median and its median over spaces, and
reports, for the subject (--subject, default `ppo`) against every other strategy:

  - the observed ratio of the medians over spaces (subject / other), and its 95% interval;
  - on how many spaces the subject is at or below the other (observed, and its 95% interval);
  - the share of resamples in which the ratio is at most --goal-ratio (default 0.8) and the
    subject is at or below the other on at least --goal-share (default 0.75) of the spaces.

The interval covers the run seeds' randomness on these spaces only (not other spaces: with
--spaces-too the spaces are resampled as well). A space counts where the subject and the other
both have runs, of the same number. --only restricts the spaces to the base names of the given
files (for example the 17 shared ones). Lines that are not JSON objects with runs are skipped;
when a (space, strategy) appears twice, the last read wins, with a warning, unless --join joins
its runs (a second set of run seeds, `ktune bench search --first-seed`). Standard library only.

    python3 bench/paired_bootstrap.py bench/results/search-loko24-2026-12-05-per-run.jsonl \\
        --only ../shared/datasets/spaces/*.json.gz
"""

import argparse
import json
import math
import os
import random
import statistics
import sys


class InputError(Exception):
    """Files that cannot be compared as given (said, exit 2)."""


def load_runs(paths, join=False):
    """{strategy: {space: [runs]}} from the lines that carry evals_to_5pct_runs; with `join`, a
    (space, strategy) found again extends its runs (seed sets, in the order the files come).

    Lines of `ktune bench search` since session 59 also say their protocol, budget and first
    seed: a PPO variant's lines of two protocols are refused (its policies differ; the other
    strategies use none), and so are joins of one seed set twice or of two budgets (a miss
    counts 10x the budget)."""
    runs = {}
    protocols = {}  # PPO variant -> protocol
    seeds_of = {}  # (space, strategy) -> [(first_seed, budget, path)]
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                values = row.get("evals_to_5pct_runs")
                if not isinstance(values, list) or not values:
                    continue
                space, strategy = row.get("space"), row.get("strategy")
                protocol = row.get("protocol")
                if protocol is not None and str(strategy).startswith("ppo"):
                    seen = protocols.setdefault(strategy, protocol)
                    if seen != protocol:
                        raise InputError(
                            f"{strategy} has runs of the {seen} and {protocol} protocols "
                            f"({path}): its policies differ; compare one protocol's runs")
                if "first_seed" in row:
                    key = (row["first_seed"], row.get("budget"), path)
                    earlier = seeds_of.setdefault((space, strategy), [])
                    for first_seed, budget, where in earlier:
                        if join and first_seed == key[0]:
                            raise InputError(
                                f"{space} {strategy}: the runs from seed {first_seed} are in "
                                f"{where} and again in {path}; --join joins different seed sets")
                        if join and budget != key[1]:
                            raise InputError(
                                f"{space} {strategy}: budgets {budget} ({where}) and {key[1]} "
                                f"({path}) cannot be joined: a miss counts 10x the budget")
                    earlier.append(key)
                by_space = runs.setdefault(strategy, {})
                if join and space in by_space:
                    by_space[space] += [float(v) for v in values]
                    continue
                if space in by_space:
                    print(f"warning: {space} {strategy} appears twice; the last one wins",
                          file=sys.stderr)
                by_space[space] = [float(v) for v in values]
    return runs


def percentile(sorted_values, q):
    """The q-quantile (0..1) of sorted values, linear between ranks."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def compare(subject_runs, other_runs, resamples, rng, spaces_too=False):
    """Observed and bootstrapped (ratio of medians over spaces, spaces at or below) of subject vs
    other, over the spaces both have, paired by run position."""
    spaces = sorted(s for s in subject_runs
                    if s in other_runs and len(subject_runs[s]) == len(other_runs[s]))
    if not spaces:
        return None

    def stats(chosen, draw):
        subject_medians, other_medians, at_or_below = [], [], 0
        for space in chosen:
            a, b = subject_runs[space], other_runs[space]
            idx = draw(len(a))
            ma = statistics.median(a[i] for i in idx)
            mb = statistics.median(b[i] for i in idx)
            subject_medians.append(ma)
            other_medians.append(mb)
            at_or_below += ma <= mb
        other = statistics.median(other_medians)
        ratio = statistics.median(subject_medians) / other if other > 0 else math.nan
        return ratio, at_or_below

    observed = stats(spaces, lambda n: range(n))
    ratios, counts = [], []
    for _ in range(resamples):
        chosen = [rng.choice(spaces) for _ in spaces] if spaces_too else spaces
        ratio, count = stats(chosen, lambda n: [rng.randrange(n) for _ in range(n)])
        ratios.append(ratio)
        counts.append(count)
    return spaces, observed, ratios, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="JSON-lines files with evals_to_5pct_runs")
    parser.add_argument("--subject", default="ppo")
    parser.add_argument("--only", nargs="+", default=None,
                        help="count only the spaces with these files' base names")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--goal-ratio", type=float, default=0.8)
    parser.add_argument("--goal-share", type=float, default=0.75)
    parser.add_argument("--spaces-too", action="store_true",
                        help="resample the spaces as well as the run seeds")
    parser.add_argument("--json", action="store_true", help="one JSON line per comparison")
    parser.add_argument("--join", action="store_true",
                        help="join the runs of a (space, strategy) found in several files, in the "
                             "order the files come (seed sets run with ktune bench search "
                             "--first-seed: give every set's files in the same order, first set "
                             "first), instead of the last read winning")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")

    if not args.files:
        parser.error("no result files (give them before --only, which takes every path after it)")
    try:
        runs = load_runs(args.files, join=args.join)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print("error: no line with evals_to_5pct_runs in the files: give the stderr of "
              "`ktune bench search --json`", file=sys.stderr)
        return 2
    if args.only is not None:
        keep = {os.path.basename(p) for p in args.only}
        found = sorted({sp for by in runs.values() for sp in by})
        runs = {st: {sp: r for sp, r in by.items() if sp in keep} for st, by in runs.items()}
        if not any(runs.values()):
            print(f"error: --only matched none of the files' spaces ({', '.join(found)})",
                  file=sys.stderr)
            return 2
    if args.subject not in runs or not runs[args.subject]:
        print(f"error: no runs of the subject '{args.subject}' in the files "
              f"(strategies with runs: {', '.join(sorted(runs)) or 'none'})", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    if not args.json:
        print(f"# paired bootstrap over run seeds ({args.resamples} resamples"
              f"{', spaces resampled too' if args.spaces_too else ''}); subject {args.subject}")
        print(f"# {'other':<16} {'spaces':>6} {'ratio':>6} {'95% interval':>15} "
              f"{'at/below':>8} {'95% interval':>13} {'P(goal)':>8}")
    for other in sorted(runs):
        if other == args.subject:
            continue
        result = compare(runs[args.subject], runs[other], args.resamples, rng, args.spaces_too)
        if result is None:
            continue
        spaces, (ratio, count), ratios, counts = result
        ratios_sorted, counts_sorted = sorted(ratios), sorted(counts)
        need = math.ceil(args.goal_share * len(spaces) - 1e-9)
        goal = sum(1 for r, c in zip(ratios, counts)
                   if r <= args.goal_ratio and c >= need) / len(ratios)
        lo, hi = percentile(ratios_sorted, 0.025), percentile(ratios_sorted, 0.975)
        clo, chi = percentile(counts_sorted, 0.025), percentile(counts_sorted, 0.975)
        if args.json:
            print(json.dumps({"subject": args.subject, "other": other, "spaces": len(spaces),
                              "ratio": ratio, "ratio_95": [lo, hi], "at_or_below": count,
                              "at_or_below_95": [clo, chi], "p_goal": goal}))
        else:
            print(f"  {other:<16} {len(spaces):>6} {ratio:>5.2f}x  [{lo:.2f}x, {hi:.2f}x] "
                  f"{count:>8} {f'[{clo:.0f}, {chi:.0f}]':>13} {goal:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
