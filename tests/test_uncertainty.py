"""Uncertainty in the report, from hand-written prediction files (no training): the bootstrap
interval over subjects of every pooled UF1, temperature scaling fitted on training subjects
only (ECE, reliability diagrams), and a set's paired comparisons against its anchors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mefnet.report.aggregate import group_runs
from mefnet.report.bootstrap import (
    paired_bootstrap,
    subject_bootstrap,
    uf1_from_counts,
    uf1_interval,
)
from mefnet.report.calibration import (
    calibrate_run,
    expected_calibration_error,
    fit_temperature,
)
from mefnet.report.compare import compare_groups
from mefnet.report.readme_figures import differences
from mefnet.report.table import main, write_table
from mefnet.runs.store import find_runs, read_run
from tests.test_ensemble import write_run

# Eight subjects of two datasets, 2-4 clips each, every class present.
CLIPS = {
    f"{ds}/{s}": [(f"{s}_{i}", (i + j) % 3) for i in range(2 + j % 3)]
    for j, (ds, s) in enumerate([("smic", f"s0{k}") for k in range(1, 5)] + [("casme2", f"sub0{k}") for k in range(1, 5)])
}
N = sum(len(v) for v in CLIPS.values())


def _probs(seed: int, sharp: float = 1.0) -> np.ndarray:
    """Class probabilities that are right about 2/3 of the time, overconfident for sharp > 1."""
    rng = np.random.default_rng(seed)
    truth = np.array([t for rows in CLIPS.values() for _, t in rows])
    z = rng.normal(size=(N, 3))
    z[np.arange(N), truth] += 1.0
    z *= sharp
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _rows(probs: np.ndarray) -> list[dict]:
    out, k = [], 0
    for key, rows in CLIPS.items():
        ds, subject = key.split("/")
        for clip, t in rows:
            out.append({"dataset": ds, "subject": subject, "clip": clip, "true": t, "pred": int(probs[k].argmax())})
            k += 1
    return out


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- UF1 intervals


def _uf1(true: np.ndarray, pred: np.ndarray, k: int = 3) -> float:
    tp = np.array([np.sum((true == c) & (pred == c)) for c in range(k)], dtype=float)
    fp = np.array([np.sum((true != c) & (pred == c)) for c in range(k)], dtype=float)
    fn = np.array([np.sum((true == c) & (pred != c)) for c in range(k)], dtype=float)
    return float(uf1_from_counts(tp, fp, fn))


def test_the_subject_bootstrap_pools_the_clips_of_the_drawn_subjects():
    """Each resampled UF1 is the pooled UF1 of the clips of the subjects drawn (a subject
    drawn twice counts twice), drawn as numpy's seeded generator draws them."""
    rows = _rows(_probs(0))
    subjects = list(dict.fromkeys((r["dataset"], r["subject"]) for r in rows))
    subject = np.array([subjects.index((r["dataset"], r["subject"])) for r in rows])
    true = np.array([r["true"] for r in rows])
    pred = np.array([r["pred"] for r in rows])
    observed, resampled = subject_bootstrap(true, pred, subject, 3, n_boot=50, seed=7)
    assert observed == pytest.approx(_uf1(true, pred))
    draws = np.random.default_rng(7).integers(0, len(subjects), size=(50, len(subjects)))
    for b in range(50):
        clips = np.concatenate([np.flatnonzero(subject == s) for s in draws[b]])
        assert resampled[b] == pytest.approx(_uf1(true[clips], pred[clips]))


def test_the_interval_shares_its_resamples_with_the_paired_bootstrap():
    """One implementation: with the same seed, the paired differences are the differences
    of the two single-experiment bootstraps."""
    rows_a, rows_b = _rows(_probs(1)), _rows(_probs(2))
    subject = np.repeat(np.arange(len(CLIPS)), [len(v) for v in CLIPS.values()])
    true = np.array([r["true"] for r in rows_a])
    a, b = np.array([r["pred"] for r in rows_a]), np.array([r["pred"] for r in rows_b])
    _, diffs = paired_bootstrap(true, a, b, subject, 3, n_boot=300, seed=3)
    _, boot_a = subject_bootstrap(true, a, subject, 3, n_boot=300, seed=3)
    _, boot_b = subject_bootstrap(true, b, subject, 3, n_boot=300, seed=3)
    np.testing.assert_allclose(diffs, boot_a - boot_b)
    low, high = uf1_interval([rows_a], 3, n_boot=300, seed=3)
    assert (low, high) == tuple(np.percentile(boot_a, [2.5, 97.5]))
    assert low <= _uf1(true, a) <= high
    assert uf1_interval([rows_a], 3, n_boot=300, seed=3) == (low, high)  # seeded: deterministic
    assert uf1_interval([rows_a], 3, n_boot=300, seed=4) != (low, high)


def test_every_pooled_uf1_of_the_table_has_an_interval_and_the_old_columns_stay(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path / "exp" / f"seed_{seed}", "exp", seed, _probs(seed), clips=CLIPS)
    rows = write_table([tmp_path / "exp"], tmp_path / "out", ensemble=True, bootstrap=400)
    assert len(rows) == 6  # all, smic, casme2; and the same for the ensemble
    for r in rows:
        assert r["uf1_ci_low"] <= r["uf1"] + 1e-9 and r["uf1"] - 1e-9 <= r["uf1_ci_high"], r
    table = _csv(tmp_path / "out" / "table.csv")
    assert list(table[0]) == ["experiment", "part", "clips", "folds", "uf1", "uar", "accuracy", "uf1_std", "uar_std",
                              "accuracy_std", "seeds", "seed_list", "missing_folds", "selection", "ensemble",
                              "uf1_ci_low", "uf1_ci_high"]
    assert [float(t["uf1_ci_low"]) for t in table] == [r["uf1_ci_low"] for r in rows]
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| UF1 | UF1 95% CI | UAR |" in md
    assert f"| {rows[0]['uf1']:.4f} ± {rows[0]['uf1_std']:.4f} | [{rows[0]['uf1_ci_low']:.4f}, " in md
    # The interval of a part resamples that part's subjects only: the smic part has 4.
    smic = [r for r in rows if r["part"] == "smic" and not r.get("ensemble")][0]
    preds = [[r for r in read_run(d).predictions if r["dataset"] == "smic"] for d in find_runs([tmp_path / "exp"])]
    assert (smic["uf1_ci_low"], smic["uf1_ci_high"]) == tuple(round(v, 4) for v in uf1_interval(preds, 3, 400))
    # Same predictions, same table.
    write_table([tmp_path / "exp"], tmp_path / "again", ensemble=True, bootstrap=400)
    assert (tmp_path / "again" / "table.csv").read_text() == (tmp_path / "out" / "table.csv").read_text()
    # The README-figures guard reads its columns by name: the new column does not disturb it.
    doc = ("| experiment | UF1 | UF1 95% CI | UAR |\n|---|---:|---:|---:|\n"
           f"| exp | {table[0]['uf1']} | [0.1, 0.9] | {table[0]['uar']} |\n")
    assert differences(doc.replace("| exp |", "| synthetic-exp |"), tmp_path / "out")[0] == [
        "README.md:3 synthetic-exp: not in " + f"{tmp_path / 'out'}/table.csv or table_au.csv"]


def test_the_latex_table_has_the_interval_column(tmp_path):
    write_run(tmp_path / "exp" / "seed_1", "exp", 1, _probs(1), clips=CLIPS)
    main([str(tmp_path / "exp"), "--out", str(tmp_path / "out"), "--latex", "--no-figures", "--bootstrap", "200"])
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert r"UF1 95\% CI" in tex and r"\begin{tabular}{llrrrcccc}" in tex
    row = _csv(tmp_path / "out" / "table.csv")[0]
    assert f"[{float(row['uf1_ci_low']):.4f}, {float(row['uf1_ci_high']):.4f}]" in tex


# ------------------------------------------------------------------ calibration


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(6000, 3))
    p = np.exp(z / 2.5)
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.08)


def test_expected_calibration_error_of_known_bins():
    conf = np.full(10, 0.9)
    assert expected_calibration_error(conf, np.array([1] * 9 + [0])) == pytest.approx(0.0)
    assert expected_calibration_error(conf, np.array([1] * 5 + [0] * 5)) == pytest.approx(0.4)
    two = expected_calibration_error(np.array([0.9, 0.9, 0.5, 0.5]), np.array([1, 1, 0, 0]))
    assert two == pytest.approx(0.5 * 0.1 + 0.5 * 0.5)


def test_a_folds_temperature_never_sees_its_test_subject(tmp_path):
    """Leak test: the test subject's labels (and probabilities) changed, its fold's fitted
    temperature is identical; the other folds', which train on it, move."""
    probs = _probs(5, sharp=2.5)
    base = calibrate_run(read_run(write_run(tmp_path / "a", "exp", 1, probs, clips=CLIPS)))
    changed = {k: [(c, (t + 1) % 3) for c, t in v] if k == "smic/s02" else v for k, v in CLIPS.items()}
    other_probs = probs.copy()
    start = sum(len(v) for k, v in list(CLIPS.items())[:1])
    other_probs[start:start + len(CLIPS["smic/s02"])] = probs[start:start + len(CLIPS["smic/s02"])][:, ::-1]
    moved = calibrate_run(read_run(write_run(tmp_path / "b", "exp", 1, other_probs, clips=changed)))
    assert moved.temperatures["smic/s02"] == base.temperatures["smic/s02"]
    assert all(moved.temperatures[f] != base.temperatures[f] for f in CLIPS if f != "smic/s02")


def test_overconfident_predictions_are_tempered_and_the_command_writes_the_diagram(tmp_path, capsys):
    # 8 subjects of 40 clips: enough clips for the fitted temperatures to generalise.
    big = {f"smic/s0{j}": [(f"c{j}_{i}", i % 3) for i in range(40)] for j in range(1, 9)}
    truth = np.array([t for rows in big.values() for _, t in rows])
    for seed in (1, 2):
        z = np.random.default_rng(seed).normal(size=(len(truth), 3))
        z[np.arange(len(truth)), truth] += 1.0
        p = np.exp(4.0 * z)
        write_run(tmp_path / "exp" / f"seed_{seed}", "exp", seed, p / p.sum(axis=1, keepdims=True), clips=big)
    main([str(tmp_path / "exp"), "--out", str(tmp_path / "out"), "--calibration", "--bootstrap", "100"])
    rows = _csv(tmp_path / "out" / "calibration.csv")
    assert [r["seed"] for r in rows] == ["1", "2"]
    for r in rows:
        assert float(r["temperature_median"]) > 1.0  # overconfident: softened
        assert float(r["nll_after"]) < float(r["nll_before"])
        assert float(r["ece_after"]) < float(r["ece_before"])
    folds = _csv(tmp_path / "out" / "calibration_folds.csv")
    assert len(folds) == 2 * len(big)
    png = tmp_path / "out" / "reliability_exp.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ECE before" in (tmp_path / "out" / "calibration.md").read_text()
    assert "reliability_*.png" in capsys.readouterr().out


def test_a_run_of_one_fold_cannot_be_calibrated(tmp_path):
    run = read_run(write_run(tmp_path / "a", "exp", 1, _probs(0)[:2], clips={"smic/s01": CLIPS["smic/s01"]}))
    with pytest.raises(Exception, match="one fold"):
        calibrate_run(run)


# ------------------------------------------------------- comparisons of a set


def test_a_multi_seed_recipe_is_paired_with_a_one_run_anchor_seed_by_seed(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path / "recipe" / f"seed_{seed}", "recipe", seed, _probs(seed, 2.0), clips=CLIPS)
    write_run(tmp_path / "anchor" / "seed_42", "anchor", 42, _probs(9), clips=CLIPS)
    groups = group_runs([read_run(d) for d in find_runs([tmp_path])])
    by = {g[0].name: g for g in groups}
    c = compare_groups(by["recipe"], by["anchor"], n_boot=200)
    assert c.seeds == [1, 2, 3] and [m.seed for m in c.mcnemar] == [1, 2, 3]
    assert c.ci_low <= c.difference <= c.ci_high


def test_the_set_table_writes_the_comparison_against_each_anchor(tmp_path):
    from mefnet.experiment.hydra_callbacks import SetTable

    dirs = []
    for seed in (1, 2, 3):
        dirs.append(write_run(tmp_path / "megc2019-am3f" / f"seed_{seed}", "megc2019-am3f", seed,
                              _probs(seed, 2.0), clips=CLIPS))
    dirs.append(write_run(tmp_path / "megc2019-ststnet-paper" / "seed_42", "megc2019-ststnet-paper", 42, _probs(9),
                          clips=CLIPS))
    dirs.append(write_run(tmp_path / "megc2019-am3f-previous-recipe" / "seed_42", "megc2019-am3f-previous-recipe",
                          42, _probs(11), clips=CLIPS))
    cb = SetTable("flows", str(tmp_path / "set"), ensemble=True, compare={
        "reference": "megc2019-am3f",
        "anchors": ["megc2019-ststnet-paper", "megc2019-offapexnet-300ep", "megc2019-am3f-previous-recipe"]})
    cb.dirs = [str(d) for d in dirs]
    cb.on_multirun_end(config=None)
    md = (tmp_path / "set" / "comparisons.md").read_text()
    assert "## Paired comparison of megc2019-am3f against each anchor" in md
    assert "| megc2019-ststnet-paper | 1, 2, 3 | " in md and "| megc2019-am3f-previous-recipe | 1, 2, 3 | " in md
    assert "Not compared: megc2019-offapexnet-300ep: not in the table" in md
    assert "McNemar" in md and (tmp_path / "set" / "table.md").is_file()


def test_the_set_table_adds_its_combinations_whose_members_ran(tmp_path):
    from mefnet.experiment.hydra_callbacks import SetTable

    dirs = [write_run(tmp_path / name / f"seed_{seed}", name, seed, _probs(seed + k), clips=CLIPS)
            for k, name in enumerate(("a", "b")) for seed in (1, 2)]
    cb = SetTable("flows", str(tmp_path / "set"), combine=["a+b", "a+c"])
    cb.dirs = [str(d) for d in dirs]
    cb.on_multirun_end(config=None)
    rows = list(csv.DictReader((tmp_path / "set" / "table.csv").open()))
    # a+c: c did not run in this set (e.g. mefnet-reproduce --only), so no rows and no error
    assert [r["experiment"] for r in rows if r["part"] == "all"] == ["a", "b", "a + b"]
    assert next(r for r in rows if r["experiment"] == "a + b")["seed_list"] == "1 2"


def test_uninformative_probabilities_are_flattened_at_the_bound_and_the_note_says_so(tmp_path):
    from mefnet.report.calibration import calibration_markdown

    # Every clip predicted negative with the same confidence, whatever its label; each subject
    # has one clip of each class, so no temperature does better than the uniform distribution.
    clips = {f"smic/s0{j}": [(f"c{j}_{c}", c) for c in range(3)] for j in range(1, 5)}
    probs = np.tile([0.6, 0.3, 0.1], (12, 1))
    result = calibrate_run(read_run(write_run(tmp_path / "a", "exp", 1, probs, clips=clips)))
    assert result.ece_after < result.ece_before
    md = calibration_markdown([result])
    assert all(t == pytest.approx(100.0, rel=1e-3) for t in result.temperatures.values())
    assert "search's bound" in md
    assert "search's bound" not in calibration_markdown([calibrate_run(read_run(
        write_run(tmp_path / "b", "exp", 1, _probs(5, sharp=2.5), clips=CLIPS)))])
