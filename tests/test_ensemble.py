"""Seed ensembles in mefnet-table, from hand-written prediction files (no training)."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from mefnet.report.metrics import pooled_metrics
from mefnet.report.table import main, write_table
from mefnet.runs.store import ReportError

CLASSES = ["negative", "positive", "surprise"]
# Two source datasets, so the ensemble gets part rows too.
CLIPS = {
    "smic/s01": [("a1", 0), ("a2", 1), ("a3", 2)],
    "smic/s02": [("b1", 0), ("b2", 0)],
    "casme2/sub01": [("c1", 1), ("c2", 2), ("c3", 0)],
}


def _probs(seed: int, n: int) -> np.ndarray:
    p = np.random.default_rng(seed).random((n, 3)) ** 3
    return p / p.sum(axis=1, keepdims=True)


def write_run(exp_dir: Path, name: str, seed: int, probs: np.ndarray, clips=CLIPS, unfinished=()) -> Path:
    """An experiment folder as mefnet-train writes it, with the given class probabilities."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "folds": list(clips), "class_names": CLASSES, "seed": seed,
              "selection": "inner_val: test", "config": {"seed": seed, "optimizer": {"lr": 0.001}}}
    (exp_dir / "experiment.json").write_text(json.dumps(record))
    k = 0
    for key, rows in clips.items():
        ds, subject = key.split("/")
        d = exp_dir / "folds" / ds / subject
        d.mkdir(parents=True, exist_ok=True)
        with (d / "predictions.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dataset", "subject", "clip", "true", "true_name", "pred", "pred_name",
                        *[f"prob_{c}" for c in CLASSES]])
            for clip, t in rows:
                p = probs[k]
                k += 1
                w.writerow([ds, subject, clip, t, CLASSES[t], int(p.argmax()), CLASSES[int(p.argmax())],
                            *[f"{x:.6f}" for x in p]])
        status = "running" if key in unfinished else "complete"
        (d / "fold.json").write_text(json.dumps({"status": status, "fold": key, "seed": seed}))
    return exp_dir


def _truth(clips=CLIPS) -> list[tuple[str, int]]:
    return [(key.split("/")[0], t) for key, rows in clips.items() for _, t in rows]


def test_the_ensemble_is_the_mean_of_its_members_probabilities(tmp_path):
    n = sum(len(v) for v in CLIPS.values())
    members = {s: np.round(_probs(s, n), 6) for s in (1, 2, 3)}
    for s, p in members.items():
        write_run(tmp_path / "runs" / "exp" / f"seed_{s}", "exp", s, p)
    rows = write_table([tmp_path / "runs"], tmp_path / "out", ensemble=True)
    assert [(r["experiment"], r["part"]) for r in rows] == [
        ("exp", "all"), ("exp", "smic"), ("exp", "casme2"),
        ("exp (ensemble of 3 seeds)", "all"), ("exp (ensemble of 3 seeds)", "smic"),
        ("exp (ensemble of 3 seeds)", "casme2"),
    ]
    mean = np.mean(list(members.values()), axis=0)
    pred = mean.argmax(axis=1)
    truth = _truth()
    for row in rows[3:]:
        keep = [i for i, (ds, _) in enumerate(truth) if row["part"] in ("all", ds)]
        m = pooled_metrics([truth[i][1] for i in keep], [int(pred[i]) for i in keep], 3, CLASSES)
        assert (row["uf1"], row["uar"], row["accuracy"]) == (round(m["uf1"], 4), round(m["uar"], 4),
                                                             round(m["accuracy"], 4))
        assert row["seeds"] == 3 and row["seed_list"] == [1, 2, 3] and row["uf1_std"] is None
        assert row["clips"] == len(keep)
    # The ensemble is not simply the mean of the seeds' scores: its predictions are new.
    assert any(int(pred[i]) != int(members[1][i].argmax()) for i in range(n))
    table = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    assert [t["ensemble"] for t in table] == ["", "", "", "3", "3", "3"]
    assert table[3]["experiment"] == "exp (ensemble of 3 seeds)" and table[3]["seeds"] == "3"
    seeds = list(csv.DictReader((tmp_path / "out" / "table_seeds.csv").open()))
    assert {s["experiment"] for s in seeds} == {"exp"}  # long form: the real runs only
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| exp (ensemble of 3 seeds) | SMIC |" in md and "mean of the seeds' stored class probabilities" in md
    assert (tmp_path / "out" / "confusion_exp_ensemble_of_3_seeds.csv").is_file()


def test_without_the_option_or_with_one_seed_there_is_no_ensemble_row(tmp_path):
    n = sum(len(v) for v in CLIPS.values())
    write_run(tmp_path / "one" / "seed_1", "one", 1, _probs(1, n))
    for s in (1, 2):
        write_run(tmp_path / "two" / f"seed_{s}", "two", s, _probs(s, n))
    plain = write_table([tmp_path / "one", tmp_path / "two"], tmp_path / "a", figures=False)
    assert not any("ensemble" in r["experiment"] for r in plain)
    rows = write_table([tmp_path / "one", tmp_path / "two"], tmp_path / "b", figures=False, ensemble=True)
    assert [r["experiment"] for r in rows if r["part"] == "all"] == ["one", "two", "two (ensemble of 2 seeds)"]


def test_members_with_different_clips_are_refused(tmp_path):
    n = sum(len(v) for v in CLIPS.values())
    write_run(tmp_path / "r" / "seed_1", "exp", 1, _probs(1, n))
    other = {**CLIPS, "smic/s02": [("b1", 0), ("bX", 0)]}
    write_run(tmp_path / "r" / "seed_2", "exp", 2, _probs(2, n), clips=other)
    write_table([tmp_path / "r"], tmp_path / "plain", figures=False)  # the seeds' rows alone are fine
    with pytest.raises(ReportError, match=r"seeds 1 and 2 predicted different clips.*smic/s02/b2.*smic/s02/bX"):
        write_table([tmp_path / "r"], tmp_path / "out", figures=False, ensemble=True)
    with pytest.raises(SystemExit, match="different clips"):
        main([str(tmp_path / "r"), "--out", str(tmp_path / "cli"), "--ensemble", "--no-figures"])


def test_a_member_with_unfinished_folds_gives_the_ensemble_of_the_folds_every_seed_finished(tmp_path, capsys):
    n = sum(len(v) for v in CLIPS.values())
    members = {s: np.round(_probs(s, n), 6) for s in (1, 2)}
    write_run(tmp_path / "r" / "seed_1", "exp", 1, members[1])
    write_run(tmp_path / "r" / "seed_2", "exp", 2, members[2], unfinished=("casme2/sub01",))
    with pytest.raises(SystemExit, match="1 of 3 folds have no finished predictions"):
        main([str(tmp_path / "r"), "--out", str(tmp_path / "refused"), "--ensemble", "--no-figures"])
    main([str(tmp_path / "r"), "--out", str(tmp_path / "out"), "--ensemble", "--no-figures", "--allow-missing"])
    err = capsys.readouterr().err
    assert "exp (ensemble of 2 seeds): left out 1 fold not finished by every seed: casme2/sub01" in err
    table = {(t["experiment"], t["part"]): t for t in csv.DictReader((tmp_path / "out" / "table.csv").open())}
    ens = table[("exp (ensemble of 2 seeds)", "all")]
    assert ens["folds"] == "2 of 3" and ens["clips"] == str(n - 3)
    assert ("exp (ensemble of 2 seeds)", "casme2") not in table  # its only fold is left out
    # The ensemble of the shared folds: each shared clip by the mean of both seeds' probabilities.
    truth = _truth()[:n - 3]
    pred = np.mean([members[1][:n - 3], members[2][:n - 3]], axis=0).argmax(axis=1)
    m = pooled_metrics([t for _, t in truth], [int(p) for p in pred], 3, CLASSES)
    assert float(ens["uf1"]) == round(m["uf1"], 4)
    md = (tmp_path / "out" / "table.md").read_text()
    assert f"| exp (ensemble of 2 seeds) | all | {n - 3} | 2 of 3 |" in md
    assert "left out 1 fold: casme2/sub01" in md


def test_missing_probability_columns_are_named(tmp_path):
    n = sum(len(v) for v in CLIPS.values())
    for s in (1, 2):
        write_run(tmp_path / "r" / f"seed_{s}", "exp", s, _probs(s, n))
    path = tmp_path / "r" / "seed_2" / "folds" / "smic" / "s01" / "predictions.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(",".join(line.split(",")[:7]) for line in lines) + "\n")
    # A fold file without its probabilities is damaged (every fold mefnet writes has them):
    # the file named, before the ensemble is attempted.
    with pytest.raises(ReportError, match=re.escape(f"{path}: missing column(s) ['prob_negative'")):
        write_table([tmp_path / "r"], tmp_path / "out", figures=False, ensemble=True)


def test_a_combination_of_experiments_is_per_seed_the_mean_of_their_probabilities(tmp_path):
    n = sum(len(v) for v in CLIPS.values())
    probs = {(name, s): np.round(_probs(10 * i + s, n), 6) for i, name in enumerate(("a", "b")) for s in (1, 2)}
    for (name, s), p in probs.items():
        write_run(tmp_path / "runs" / name / f"seed_{s}", name, s, p)
    write_run(tmp_path / "runs" / "b" / "seed_3", "b", 3, _probs(99, n))  # a has no seed 3: left out
    rows = write_table([tmp_path / "runs"], tmp_path / "out", figures=False, ensemble=True, combine=["a+b"])
    names = [r["experiment"] for r in rows if r["part"] == "all"]
    assert names == ["a", "a (ensemble of 2 seeds)", "b", "b (ensemble of 3 seeds)", "a + b",
                     "a + b (ensemble of 2 seeds)"]
    truth = [t for _, t in _truth()]
    combo = next(r for r in rows if r["experiment"] == "a + b" and r["part"] == "all")
    per_seed = []
    for s in (1, 2):
        pred = ((probs[("a", s)] + probs[("b", s)]) / 2).argmax(axis=1)
        per_seed.append(pooled_metrics(truth, pred.tolist(), 3, CLASSES)["uf1"])
    assert combo["seed_list"] == [1, 2] and combo["seeds"] == 2
    assert combo["uf1"] == round(float(np.mean(per_seed)), 4)
    assert combo["uf1_std"] == round(float(np.std(per_seed, ddof=1)), 4)
    assert combo["uf1_ci_low"] is not None and combo["uf1_ci_low"] <= combo["uf1"] <= combo["uf1_ci_high"]
    # every member of every seed, averaged
    ens = next(r for r in rows if r["experiment"] == "a + b (ensemble of 2 seeds)" and r["part"] == "all")
    pred = np.mean(list(probs.values()), axis=0).argmax(axis=1)
    assert ens["uf1"] == round(pooled_metrics(truth, pred.tolist(), 3, CLASSES)["uf1"], 4)
    seeds = list(csv.DictReader((tmp_path / "out" / "table_seeds.csv").open()))
    run = next(s["run"] for s in seeds if s["experiment"] == "a + b" and s["part"] == "all" and s["seed"] == "1")
    assert run == f"{Path('..') / 'runs' / 'a' / 'seed_1'} + {Path('..') / 'runs' / 'b' / 'seed_1'}"


@pytest.mark.parametrize(("spec", "match"), [
    ("a", "two or more different experiment names"),
    ("a+a", "two or more different experiment names"),
    ("a+nope", "no emotion experiment named 'nope'.*found: a, b, c, d"),
    ("a+c", "'a' predicts negative, positive, surprise but 'c' predicts"),
    ("a+d", r"no seed in common \(a: seeds 1; d: seeds 7\)"),
])
def test_combinations_that_cannot_be_averaged_are_refused(tmp_path, monkeypatch, spec, match):
    n = sum(len(v) for v in CLIPS.values())
    write_run(tmp_path / "r" / "a", "a", 1, _probs(1, n))
    write_run(tmp_path / "r" / "b", "b", 1, _probs(2, n))
    with monkeypatch.context() as m:  # an experiment of other classes
        m.setattr(sys.modules[__name__], "CLASSES", ["negative", "positive", "other"])
        write_run(tmp_path / "r" / "c", "c", 1, _probs(3, n))
    write_run(tmp_path / "r" / "d", "d", 7, _probs(4, n))
    with pytest.raises(ReportError, match=match):
        write_table([tmp_path / "r"], tmp_path / "out", figures=False, combine=[spec])
    with pytest.raises(SystemExit, match="mefnet-table: --combine"):
        main([str(tmp_path / "r"), "--out", str(tmp_path / "cli"), "--no-figures", "--combine", spec])


def test_a_combination_of_experiments_on_other_clips_names_both_runs(tmp_path):
    n = sum(len(v) for v in CLIPS.values())
    write_run(tmp_path / "r" / "a", "a", 1, _probs(1, n))
    other = {**CLIPS, "smic/s02": [("b1", 0), ("bX", 0)]}
    write_run(tmp_path / "r" / "b", "b", 1, _probs(2, n), clips=other)
    with pytest.raises(SystemExit, match=r"ensemble of 'a \+ b': a seed 1 and b seed 1 predicted different clips"):
        main([str(tmp_path / "r"), "--out", str(tmp_path / "cli"), "--no-figures", "--combine", "a+b"])
