#!/usr/bin/env python3
"""One Markdown table from search-benchmark JSONL files: ktune's rows (`ktune bench search --json`:
strategies `ppo`, `random`, `anneal`, `genetic`, `model`, ...) and Kernel Tuner's (`kt:...` rows
from run_kernel_tuner.py), which share the same keys.

Rows are spaces, columns strategies, cells the chosen metric (default evals_to_5pct). Below the
table: each strategy's median of the metric over spaces; the best single other strategy (the one,
among those whose name does not start with `ppo`, with the lowest median); and for the subject
(--subject, default `ppo`) its median over that best's median, and on how many spaces the subject
is at or below that strategy.

Medians over spaces use only the spaces where the strategy has a value (with --common-spaces: only
the spaces where every strategy shown has one); the comparison of the subject with the best other
strategy, space by space, uses the spaces where both have one. When the same
(space, strategy) appears more than once (several files), the last one read wins, with a warning.
Standard library only.

    python3 bench/kernel_tuner/merge_table.py bench/results/search-all-spaces.jsonl \
        bench/results/kernel-tuner-2026-12-02.jsonl
"""

import argparse
import json
import math
import statistics
import sys


def median(values):
    return statistics.median(values) if values else math.nan


def fmt(x):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and not math.isfinite(x):
        return "—"
    if float(x) == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def load(paths, metric):
    cells = {}  # (space, strategy) -> value (float) or "error"
    spaces, strategies = [], []
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not JSON: {e}")
                if "space" not in row or "strategy" not in row:
                    print(f"warning: {path}:{n}: no space/strategy, skipped", file=sys.stderr)
                    continue
                space, strategy = row["space"], row["strategy"]
                if "error" in row:
                    value = "error"
                elif metric not in row:
                    print(f"warning: {path}:{n}: no {metric}, skipped", file=sys.stderr)
                    continue
                else:
                    value = row[metric]
                    value = None if value is None else float(value)
                if (space, strategy) in cells:
                    print(f"warning: {space} {strategy} appears more than once; {path}:{n} wins", file=sys.stderr)
                cells[(space, strategy)] = value
                if space not in spaces:
                    spaces.append(space)
                if strategy not in strategies:
                    strategies.append(strategy)
    return cells, spaces, strategies


def numeric(v):
    return isinstance(v, float) and math.isfinite(v)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="JSONL files of search-benchmark rows")
    p.add_argument("--subject", default="ppo", help="the strategy compared with the best other one (default ppo)")
    p.add_argument("--metric", default="evals_to_5pct", help="the row key shown and summarised (default evals_to_5pct)")
    p.add_argument("--higher-is-better", action="store_true",
                   help="for metrics where more is better (reached_5pct, ...): best = highest median, "
                        "and the subject wins a space when at or above")
    p.add_argument("--common-spaces", action="store_true",
                   help="summarise (medians, best other strategy) only over the spaces where every strategy has a value")
    args = p.parse_args()
    metric, subject = args.metric, args.subject
    cells, spaces, strategies = load(args.files, metric)
    if not cells:
        sys.exit("merge_table.py: no rows")
    # ktune's strategies first (in the order read), then Kernel Tuner's
    strategies = [s for s in strategies if not s.startswith("kt:")] + [s for s in strategies if s.startswith("kt:")]

    out = []
    out.append("| space | " + " | ".join(strategies) + " |")
    out.append("|---|" + "---|" * len(strategies))
    for space in spaces:
        out.append("| " + space + " | " + " | ".join(fmt(cells.get((space, s))) for s in strategies) + " |")

    summary_spaces = spaces
    if args.common_spaces:
        summary_spaces = [sp for sp in spaces if all(numeric(cells.get((sp, s))) for s in strategies)]
    medians = {}
    for s in strategies:
        vals = [cells[(sp, s)] for sp in summary_spaces if numeric(cells.get((sp, s)))]
        medians[s] = (median(vals), len(vals))
    out.append("| **median over spaces** | " + " | ".join(fmt(medians[s][0]) for s in strategies) + " |")
    out.append("")
    out.append(f"Metric: `{metric}` ({'higher' if args.higher_is_better else 'lower'} is better); "
               "— = no value (null, or the strategy did not run on that space); `error` = the strategy threw.")
    out.append("")
    out.append(f"Median of `{metric}` over spaces, per strategy:")
    out.append("")
    order = sorted((s for s in strategies if math.isfinite(medians[s][0])),
                   key=lambda s: medians[s][0], reverse=args.higher_is_better)
    for s in order:
        m, n = medians[s]
        out.append(f"- {s}: {fmt(m)} ({n} spaces)")
    for s in strategies:
        if not math.isfinite(medians[s][0]):
            out.append(f"- {s}: no value")
    if args.common_spaces:
        out.append("")
        out.append(f"(Summaries over the {len(summary_spaces)} spaces where every strategy has a value.)")
    elif len({n for _, n in medians.values()}) > 1:
        out.append("")
        out.append("Warning: the strategies' medians are over different numbers of spaces; "
                   "--common-spaces compares them on the same ones.")
    errors = sorted((sp, s) for (sp, s), v in cells.items() if v == "error")
    if errors:
        out.append("")
        out.append("Errors: " + ", ".join(f"{s} on {sp}" for sp, s in errors))

    others = [s for s in order if not s.startswith("ppo") and s != subject]
    out.append("")
    if not others:
        out.append("Best single other strategy: none (no strategy outside `ppo*` has a value).")
    else:
        best = others[0]
        out.append(f"Best single other strategy (not `ppo*`, not the subject, by median): **{best}**, median {fmt(medians[best][0])}.")
        if subject in medians and math.isfinite(medians[subject][0]):
            ratio = medians[subject][0] / medians[best][0] if medians[best][0] else math.nan
            both = [sp for sp in summary_spaces if numeric(cells.get((sp, subject))) and numeric(cells.get((sp, best)))]
            if args.higher_is_better:
                wins = sum(cells[(sp, subject)] >= cells[(sp, best)] for sp in both)
                word = "at or above"
            else:
                wins = sum(cells[(sp, subject)] <= cells[(sp, best)] for sp in both)
                word = "at or below"
            out.append(f"Subject **{subject}**: median {fmt(medians[subject][0])}; "
                       f"ratio {subject} / {best} = {ratio:.3f}; "
                       f"{subject} is {word} {best} on {wins} of {len(both)} spaces.")
        else:
            out.append(f"Subject **{subject}**: no rows with a value (pass --subject NAME).")
    print("\n".join(out))


if __name__ == "__main__":
    main()
