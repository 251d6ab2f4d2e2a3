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


def lines_of(path: Path, rows) -> Path:
    # As ktune bench search writes them since session 59: protocol, budget and first seed.
    path.write_text("".join(json.dumps({"space": s, "strategy": st, "evals_to_5pct_runs": runs,
                                        "protocol": protocol, "budget": budget,
                                        "first_seed": first}) + "\n"
                            for s, st, runs, protocol, budget, first in rows))
    return path


def test_mixing_protocols_or_joining_a_seed_set_twice_is_refused(tmp_path, capsys):
    plain = lines_of(tmp_path / "plain.jsonl", [("a", "ppo", [5.0, 6.0], "plain", 400, 1),
                                                ("a", "model", [9.0, 9.0], "plain", 400, 1)])
    loko = lines_of(tmp_path / "loko.jsonl",
                    [("a", "ppo", [7.0, 8.0], "leave-one-kernel-out", 400, 1),
                     ("a", "model", [9.0, 9.0], "leave-one-kernel-out", 400, 1)])
    assert paired_bootstrap.main([str(plain), str(loko)]) == 2
    assert "ppo has runs of the plain and leave-one-kernel-out protocols" in capsys.readouterr().err
    # The baselines use no policy: their protocol does not matter.
    baselines = lines_of(tmp_path / "baselines.jsonl",
                         [("a", "random", [20.0, 30.0], "plain", 400, 1)])
    assert paired_bootstrap.main([str(loko), str(baselines)]) == 0
    capsys.readouterr()
    assert paired_bootstrap.main(["--join", str(loko), str(loko)]) == 2
    assert "the runs from seed 1 are in" in capsys.readouterr().err
    later = lines_of(tmp_path / "later.jsonl",
                     [("a", "ppo", [7.0, 8.0], "leave-one-kernel-out", 200, 3),
                      ("a", "model", [9.0, 9.0], "leave-one-kernel-out", 200, 3)])
    assert paired_bootstrap.main(["--join", str(loko), str(later)]) == 2
    assert "budgets 400" in capsys.readouterr().err


def test_files_after_only_an_only_matching_nothing_and_no_runs_are_said(tmp_path, capsys):
    f = str(write_lines(tmp_path / "runs.jsonl", [("a.json.gz", "ppo", [5.0, 5.0]),
                                                  ("a.json.gz", "model", [9.0, 9.0])]))
    try:
        paired_bootstrap.main(["--only", "x.json.gz", f])
        raise AssertionError("expected a usage error")
    except SystemExit as e:
        assert e.code == 2
    assert "give them before --only" in capsys.readouterr().err
    assert paired_bootstrap.main([f, "--only", "nosuch.json.gz"]) == 2
    assert "--only matched none of the files' spaces (a.json.gz)" in capsys.readouterr().err
    text = tmp_path / "table.txt"
    text.write_text("space strategy @25\npnpoly ppo 1.0\n")
    assert paired_bootstrap.main([str(text)]) == 2
    assert "ktune bench search --json" in capsys.readouterr().err
