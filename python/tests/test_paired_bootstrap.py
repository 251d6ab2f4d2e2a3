"""bench/paired_bootstrap.py: the interval it reports for a search benchmark's comparison."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("paired_bootstrap",
                                               REPO / "bench" / "paired_bootstrap.py")
paired_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired_bootstrap)


def write_lines(path: Path, rows) -> Path:
    # As `ktune bench search --json` writes them on stderr, among progress lines.
    text = ["protocol: plain"]
    for space, strategy, runs in rows:
        text.append(json.dumps({"space": space, "strategy": strategy, "agent_ms_per_batch": 1.0,
                                "evals_to_5pct_runs": runs}))
    path.write_text("\n".join(text) + "\n")
    return path


def results(capsys, argv):
    assert paired_bootstrap.main(argv + ["--json", "--resamples", "300"]) == 0
    return {r["other"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}


def test_a_uniformly_faster_subject_meets_the_goal_in_every_resample(tmp_path, capsys):
    rows = []
    for s in ("a.json.gz", "b.json.gz", "c.json.gz", "d.json.gz"):
        rows += [(s, "ppo", [10.0] * 6), (s, "model", [20.0] * 6)]
    out = results(capsys, [str(write_lines(tmp_path / "runs.jsonl", rows))])
    m = out["model"]
    assert m["spaces"] == 4
    assert m["ratio"] == 0.5 and m["ratio_95"] == [0.5, 0.5]
    assert m["at_or_below"] == 4 and m["p_goal"] == 1.0


def test_runs_pair_up_by_seed(tmp_path, capsys):
    # Each run of the subject is one evaluation faster than the same seed's run of the other, with
    # runs that vary tenfold: drawn jointly, the subject is at or below on every space in every
    # resample; drawn apart, it would not be.
    rows = []
    for s in ("a", "b", "c"):
        other = [10.0, 200.0, 30.0, 400.0, 50.0, 600.0, 70.0, 15.0]
        rows += [(s, "ppo", [v - 1 for v in other]), (s, "anneal", other)]
    out = results(capsys, [str(write_lines(tmp_path / "runs.jsonl", rows))])
    assert out["anneal"]["at_or_below_95"] == [3, 3]
    assert out["anneal"]["ratio_95"][1] < 1.0


def test_only_keeps_the_named_spaces_and_a_missing_subject_is_an_error(tmp_path, capsys):
    rows = [("a.json.gz", "ppo", [5.0, 5.0]), ("a.json.gz", "model", [10.0, 10.0]),
            ("h200.json.gz", "ppo", [50.0, 50.0]), ("h200.json.gz", "model", [10.0, 10.0])]
    f = str(write_lines(tmp_path / "runs.jsonl", rows))
    out = results(capsys, [f, "--only", "/somewhere/a.json.gz"])
    assert out["model"]["spaces"] == 1 and out["model"]["ratio"] == 0.5
    assert paired_bootstrap.main(["--subject", "ppo-wholespace", f]) == 2
    assert "no runs of the subject 'ppo-wholespace'" in capsys.readouterr().err
