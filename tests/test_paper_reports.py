"""Reports for a paper: paired comparison (checked by hand), per class, per subject, LaTeX, curves."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from mefnet.report.aggregate import group_runs
from mefnet.report.compare import compare, mcnemar, paired_bootstrap
from mefnet.report.curves import write_curves
from mefnet.report.paper_tables import per_class_rows, per_subject_rows, to_latex
from mefnet.report.table import main, write_table
from mefnet.runs.store import find_runs, read_run

CLASSES = ["negative", "positive"]


def fake_run(root: Path, name: str, seed: int, preds: dict[str, list[tuple[str, int, int]]]) -> Path:
    """A finished run as mefnet-train stores it: ``preds`` maps subject -> (clip, true, pred)."""
    run = root / name / f"seed_{seed}"
    folds = [f"lab/{s}" for s in preds]
    run.mkdir(parents=True)
    (run / "experiment.json").write_text(json.dumps({
        "name": name, "folds": folds, "class_names": CLASSES, "seed": seed,
        "selection": "fixed_epochs: trained 3 epochs", "config": {"backbone": {"name": name}, "seed": seed},
    }))
    for subject, rows in preds.items():
        fold = run / "folds" / "lab" / subject
        fold.mkdir(parents=True)
        with (fold / "predictions.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dataset", "subject", "clip", "true", "true_name", "pred", "pred_name",
                        *[f"prob_{c}" for c in CLASSES]])
            for clip, t, p in rows:
                w.writerow(["lab", subject, clip, t, CLASSES[t], p, CLASSES[p],
                            *[f"{float(k == p):.6f}" for k in range(len(CLASSES))]])
        (fold / "fold.json").write_text(json.dumps({"status": "complete", "selection": {"rule": "fixed_epochs"},
                                                    "epochs": 3}))
    return root / name


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    """A is right on every clip; B is wrong on both clips of s0 and right on s1.

    By hand: UF1(A) = 1. B's counts per class are tp 1, fp 1, fn 1, so F1 = 2/4 = 0.5 for
    both classes and UF1(B) = 0.5: the difference is 0.5. Resampling the two subjects
    gives {s0, s0} (B has no hit: UF1 0, difference 1) with probability 1/4, {s1, s1}
    (both perfect: difference 0) with 1/4 and {s0, s1} (difference 0.5) with 1/2.
    McNemar: b = 2 (s0's clips), c = 0: exact p = 2 * (1/2)^2 = 0.5; corrected chi-square
    (2 - 1)^2 / 2 = 0.5, p = erfc(sqrt(0.25)).
    """
    s0 = [("c1", 0, 0), ("c2", 1, 1)]
    s1 = [("c3", 0, 0), ("c4", 1, 1)]
    a = fake_run(tmp_path, "model-a", 42, {"s0": s0, "s1": s1})
    b = fake_run(tmp_path, "model-b", 42, {"s0": [("c1", 0, 1), ("c2", 1, 0)], "s1": s1})
    return a, b


def test_mcnemar_matches_a_hand_computed_example():
    # 5 clips right only under A, 1 right only under B, 7 right under both, 3 wrong under both.
    a = np.array([1] * 5 + [0] * 1 + [1] * 7 + [0] * 3, dtype=bool)
    b = np.array([0] * 5 + [1] * 1 + [1] * 7 + [0] * 3, dtype=bool)
    m = mcnemar(a, b)
    assert (m.b, m.c) == (5, 1)
    # exact: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * (1 + 6) / 64
    assert m.p_exact == pytest.approx(14 / 64)
    assert m.chi2 == pytest.approx(9 / 6) and m.p_chi2 == pytest.approx(math.erfc(math.sqrt(0.75)))
    assert mcnemar(a, a).p_exact == 1.0


def test_paired_bootstrap_matches_the_hand_enumerated_distribution(pair):
    true = np.array([0, 1, 0, 1])
    observed, diffs = paired_bootstrap(true, true, np.array([1, 0, 0, 1]), np.array([0, 0, 1, 1]), 2,
                                       n_boot=4000, seed=1)
    assert observed == pytest.approx(0.5)
    values, counts = np.unique(np.round(diffs, 9), return_counts=True)
    assert values.tolist() == [0.0, 0.5, 1.0]
    assert counts / 4000 == pytest.approx([0.25, 0.5, 0.25], abs=0.03)

    c = compare(*pair, n_boot=4000, bootstrap_seed=1)
    assert (c.uf1_a, c.uf1_b, c.difference) == pytest.approx((1.0, 0.5, 0.5))
    assert (c.ci_low, c.ci_high) == (0.0, 1.0) and c.clips == 4 and c.subjects == 2
    assert c.p_bootstrap == pytest.approx(0.5, abs=0.06)
    (m,) = c.mcnemar
    assert (m.b, m.c, m.p_exact) == (2, 0, 0.5)
    assert m.chi2 == pytest.approx(0.5) and m.p_chi2 == pytest.approx(math.erfc(0.5))
    # Same seed of the resampling, same interval.
    assert compare(*pair, n_boot=4000, bootstrap_seed=1) == c


def test_compare_refuses_runs_that_did_not_predict_the_same_clips(pair, tmp_path):
    other = fake_run(tmp_path, "model-c", 42, {"s0": [("c1", 0, 0)], "s1": [("c3", 0, 0), ("c4", 1, 1)]})
    with pytest.raises(Exception, match="did not predict the same clips"):
        compare(pair[0], other, n_boot=10)


def test_compare_command_writes_its_report(pair, tmp_path, capsys):
    main(["--compare", str(pair[0]), str(pair[1]), "--bootstrap", "500", "--out", str(tmp_path / "cmp")])
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "difference (A - B) | +0.5000" in text and "| 42 | 2 | 0 | 0.5000 |" in text
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["mcnemar"][0]["b"] == 2


def test_compare_of_partial_runs_uses_the_folds_both_finished(pair, tmp_path, capsys):
    s2 = [("c5", 0, 0), ("c6", 1, 1)]
    a = fake_run(tmp_path / "p", "model-a", 42, {"s0": [("c1", 0, 0), ("c2", 1, 1)], "s1": [("c3", 0, 0), ("c4", 1, 1)],
                                                 "s2": s2})
    b = fake_run(tmp_path / "p", "model-b", 42, {"s0": [("c1", 0, 1), ("c2", 1, 0)], "s1": [("c3", 0, 0), ("c4", 1, 1)],
                                                 "s2": s2})
    (a / "seed_42" / "folds" / "lab" / "s2" / "fold.json").unlink()  # A's fold s2 never finished
    with pytest.raises(SystemExit, match="missing 1 fold; .*--allow-missing"):
        main(["--compare", str(a), str(b), "--bootstrap", "100", "--out", str(tmp_path / "refused")])
    main(["--compare", str(a), str(b), "--bootstrap", "4000", "--bootstrap-seed", "1", "--allow-missing",
          "--out", str(tmp_path / "cmp")])
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "left out 1 fold that not every compared run finished: lab/s2" in text
    # On the shared folds s0 and s1 it is exactly the comparison of the complete pair.
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    full = compare(*pair, n_boot=4000, bootstrap_seed=1)
    assert result["left_out"] == ["lab/s2"] and result["clips"] == full.clips == 4
    assert (result["difference"], result["ci_low"], result["ci_high"]) == (full.difference, full.ci_low, full.ci_high)


def test_per_class_and_per_subject_tables(pair):
    groups = group_runs([read_run(d) for d in find_runs(list(pair))])
    rows = {(r["experiment"], r["class"]): r for r in per_class_rows(groups)}
    assert rows[("model-a", "negative")]["f1"] == 1.0 and rows[("model-b", "positive")]["f1"] == 0.5
    assert rows[("model-b", "negative")]["recall"] == 0.5 and rows[("model-b", "negative")]["clips"] == 2
    subjects = {(r["experiment"], r["subject"]): r for r in per_subject_rows(groups)}
    assert subjects[("model-b", "lab/s0")]["accuracy"] == 0.0 and subjects[("model-b", "lab/s1")]["accuracy"] == 1.0
    assert subjects[("model-a", "lab/s0")]["classes"] == "negative:1 positive:1"


def _latex_structure(tex: str) -> list[str]:
    """Data rows of a LaTeX table, after checking that it is balanced."""
    assert tex.count("{") - tex.count(r"\{") == tex.count("}") - tex.count(r"\}")
    for env in re.findall(r"\\begin\{(\w+)\}", tex):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}")
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    rows = [line for line in body.splitlines() if line.strip() and line.strip() != r"\midrule"]
    columns = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    for line in rows:
        assert line.endswith(r"\\") and line.count("&") - line.count(r"\&") == len(columns) - 1, line
        assert line.count("$") % 2 == 0
    return rows


def test_latex_table_is_balanced_with_one_row_per_experiment_and_part(pair, tmp_path):
    rows = write_table(list(pair), tmp_path / "t", figures=False)
    lines = _latex_structure(to_latex(rows))
    assert len(lines) == len(rows) == 2 and lines[0].startswith(r"model-a & all")
    # A composite: three parts per experiment, several seeds (mean \pm std), names escaped.
    parts = [{"experiment": "megc_am3f", "part": p, "title": t, "clips": c, "folds": f, "seeds": 3,
              "uf1": 0.7, "uf1_std": 0.01, "uar": 0.71, "uar_std": 0.02, "accuracy": 0.75, "accuracy_std": 0.0,
              "selection": "inner_val"}
             for p, t, c, f in (("all", "all", 442, 68), ("smic", "SMIC", 164, 16), ("samm", "SAMM", 133, 28))]
    tex = to_latex(parts + [{**parts[0], "experiment": "megc_ststnet"}])
    lines = _latex_structure(tex)
    assert len(lines) == 4 and lines[0].startswith(r"megc\_am3f & all & 442 & 68 & 3 & $0.7000 \pm 0.0100$")
    assert lines[1].startswith(" & SMIC") and tex.count(r"\midrule") == 2


def test_table_command_writes_latex_per_class_per_subject(pair, tmp_path, capsys):
    out = tmp_path / "paper"
    main([str(pair[0].parent), "--latex", "--no-figures", "--out", str(out)])
    assert {"table.tex", "per_class.csv", "per_class.md", "per_subject.csv"} <= {p.name for p in out.iterdir()}
    assert "per_class.csv" in capsys.readouterr().out
    _latex_structure((out / "table.tex").read_text())


def test_curves_mark_the_chosen_epoch_of_an_inner_validation_run(tmp_path):
    from PIL import Image

    from mefnet.config import compose
    from mefnet.experiment.train import run
    from tests.helpers import tiny_overrides

    cfg = compose(tiny_overrides(tmp_path, "curves", "logger=csv", "selection=inner_val", "inner_val.smooth=1",
                                 "inner_val.every_n_epochs=1", "inner_val.min_epochs=1", "trainer.max_epochs=4"))
    run(cfg)
    groups = group_runs([read_run(cfg.experiment_dir)])
    (png,) = write_curves(groups, tmp_path / "out")
    assert png.name == "curves_curves.png"
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (420, 1100, 3) and image.std() > 10
    # The chosen-epoch markers are drawn in their own colour (#d95f02).
    assert np.any(np.all(np.abs(image.astype(int) - [0xD9, 0x5F, 0x02]) < 12, axis=-1))
    from mefnet.report.curves import fold_curves

    folds = fold_curves(groups[0][0])
    assert len(folds) == 4 and all(1 <= f["chosen"] <= 4 and f["val"] and f["loss"] for f in folds)
