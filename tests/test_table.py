"""mefnet-table on hand-made experiment folders: seeds, side-by-side experiments, parts,
missing folds, figures. The prediction files are written directly (no training)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall

from mefnet.report.aggregate import experiment_rows
from mefnet.report.metrics import pooled_metrics
from mefnet.report.table import main, write_table
from mefnet.runs.store import IncompleteExperimentError, ReportError

CLASSES = ["negative", "positive", "surprise"]
RULE = "fixed_epochs: trained 3 epochs, the test subject predicted once after training"


def make_run(
    exp_dir: Path,
    name: str,
    seed: int,
    folds: dict[str, list[tuple[str, int, int]]],
    config: dict | None = None,
    unfinished: tuple[str, ...] = (),
    selection: str = RULE,
) -> Path:
    """An experiment folder as mefnet-train writes it: experiment.json, and per fold
    predictions.csv + fold.json (``folds`` maps '<dataset>/<subject>' -> [(clip, true, pred)])."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    cfg = {
        "seed": seed,
        "experiment_name": name,
        "experiment_dir": str(exp_dir),  # differs per seed: a location, not compared
        "paths": {"output_dir": str(exp_dir.parent), "data_dir": f"/data/{seed}"},
        "dataset": {"name": "synthetic", "index": {"seed": 0, "root": f"/copy{seed}", "num_subjects": 4}},
        "selection_split": {"seed": seed, "fraction": 0.2},  # follows the seed: not a difference
        "optimizer": {"lr": 0.001},
        "n_jobs": seed % 2 + 1,
        **(config or {}),
    }
    record = {"name": name, "fingerprint": f"fp{seed}", "dataset": "synthetic", "folds": list(folds),
              "class_names": CLASSES, "selection": selection, "seed": seed, "config": cfg}
    (exp_dir / "experiment.json").write_text(json.dumps(record))
    for key, clips in folds.items():
        ds, subject = key.split("/")
        d = exp_dir / "folds" / ds / subject
        d.mkdir(parents=True, exist_ok=True)
        with (d / "predictions.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dataset", "subject", "clip", "true", "true_name", "pred", "pred_name",
                        *[f"prob_{c}" for c in CLASSES]])
            for clip, t, p in clips:
                probs = [0.1] * 3
                probs[p] = 0.8
                w.writerow([ds, subject, clip, t, CLASSES[t], p, CLASSES[p], *probs])
        status = "running" if key in unfinished else "complete"
        (d / "fold.json").write_text(json.dumps({"status": status, "fold": key, "seed": seed}))
    return exp_dir


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# Ground truth of six clips over two subjects; predictions of three seeds.
TRUTH = {"synthetic/sub01": [("c1", 0), ("c2", 0), ("c3", 1)], "synthetic/sub02": [("c4", 2), ("c5", 0), ("c6", 1)]}
PREDS = {
    0: [0, 0, 1, 2, 0, 1],  # all right
    1: [0, 1, 1, 2, 0, 1],  # c2: negative -> positive
    2: [0, 0, 0, 0, 0, 1],  # c3 positive -> negative, c4 surprise -> negative
}


def _folds(preds: list[int], truth=TRUTH) -> dict:
    it = iter(preds)
    return {k: [(clip, t, next(it)) for clip, t in clips] for k, clips in truth.items()}


def test_mean_and_std_over_seeds_match_a_hand_computation(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, preds in PREDS.items():
        make_run(sweep / "exp" / f"seed_{seed}", "exp", seed, _folds(preds))
    rows = write_table([sweep], tmp_path / "out")
    # Seed 0: all right. Seed 1: F1 = (4/5, 4/5, 1), recall = (2/3, 1, 1), 5/6 right.
    # Seed 2: F1 = (6/8, 2/3, 0), recall = (1, 1/2, 0), 4/6 right.
    uf1 = [1.0, (0.8 + 0.8 + 1) / 3, (0.75 + 2 / 3 + 0) / 3]
    uar = [1.0, (2 / 3 + 1 + 1) / 3, (1 + 0.5 + 0) / 3]
    acc = [1.0, 5 / 6, 4 / 6]

    def mean_sd(xs):
        m = sum(xs) / len(xs)
        return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))

    (row,) = rows
    assert (row["experiment"], row["part"], row["seeds"], row["clips"], row["folds"]) == ("exp", "all", 3, 6, 2)
    for key, xs in (("uf1", uf1), ("uar", uar), ("accuracy", acc)):
        m, sd = mean_sd(xs)
        assert row[key] == pytest.approx(m, abs=5e-5) and row[f"{key}_std"] == pytest.approx(sd, abs=5e-5)
    table = _csv(tmp_path / "out" / "table.csv")
    assert float(table[0]["uf1"]) == pytest.approx(mean_sd(uf1)[0], abs=5e-5)
    assert float(table[0]["uf1_std"]) == pytest.approx(mean_sd(uf1)[1], abs=5e-5)
    assert table[0]["seed_list"] == "0 1 2"
    seeds = _csv(tmp_path / "out" / "table_seeds.csv")
    assert [int(s["seed"]) for s in seeds] == [0, 1, 2]
    assert [float(s["uf1"]) for s in seeds] == pytest.approx(uf1, abs=1e-6)
    assert [float(s["uar"]) for s in seeds] == pytest.approx(uar, abs=1e-6)
    assert seeds[1]["run"] == "../sweep/exp/seed_1"
    md = (tmp_path / "out" / "table.md").read_text()
    m, sd = mean_sd(uf1)
    assert f"| exp | all | 6 | 2 | 3 | {m:.4f} ± {sd:.4f} |" in md
    # Summed over the seeds, each clip counted once per seed.
    assert np.sum(row["confusion"]) == 18 and row["confusion"][2] == [1, 0, 2]


def test_a_single_seed_shows_no_std(tmp_path):
    make_run(tmp_path / "one", "one", 7, _folds(PREDS[1]))
    (row,) = write_table([tmp_path / "one"], tmp_path / "one")
    assert row["seeds"] == 1 and row["uf1_std"] is None
    assert f"| one | all | 6 | 2 | 1 | {row['uf1']:.4f} | " in (tmp_path / "one" / "table.md").read_text()
    assert _csv(tmp_path / "one" / "table.csv")[0]["uf1_std"] == ""


def test_two_experiments_side_by_side_with_each_selection_rule_once(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / "a" / f"seed_{seed}", "ststnet-ce", seed, _folds(PREDS[seed]))
        make_run(tmp_path / "b" / f"seed_{seed}", "am3f-la", seed, _folds(PREDS[seed + 1]),
                 config={"optimizer": {"lr": 0.01}})
    make_run(tmp_path / "c", "am3f-inner", 0, _folds(PREDS[2]), selection="inner_val: 3 training subjects")
    rows = write_table([tmp_path / "b", tmp_path / "a", tmp_path / "c"], tmp_path / "out")
    assert [(r["experiment"], r["seeds"]) for r in rows] == [("am3f-la", 2), ("ststnet-ce", 2), ("am3f-inner", 1)]
    md = (tmp_path / "out" / "table.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "experiment" not in ln]
    assert [ln.split(" | ")[0] for ln in lines] == ["| am3f-la", "| ststnet-ce", "| am3f-inner"]
    assert md.count("Model selection") == 2
    assert f"Model selection (am3f-la, ststnet-ce): {RULE}." in md
    assert "Model selection (am3f-inner): inner_val: 3 training subjects." in md
    assert [r["experiment"] for r in _csv(tmp_path / "out" / "table.csv")] == ["am3f-la", "ststnet-ce", "am3f-inner"]
    assert {p.name for p in (tmp_path / "out").glob("confusion_*")} == {
        f"confusion_{n}.{e}" for n in ("am3f-la", "ststnet-ce", "am3f-inner") for e in ("csv", "png")}
    # --name keeps the matching experiments only.
    only = write_table([tmp_path], tmp_path / "out2", names=["am3f-*"])
    assert [r["experiment"] for r in only] == ["am3f-la", "am3f-inner"]


def test_same_name_with_a_different_config_is_an_error_naming_both_runs(tmp_path):
    first = make_run(tmp_path / "x" / "seed_0", "exp", 0, _folds(PREDS[0]))
    second = make_run(tmp_path / "y" / "seed_1", "exp", 1, _folds(PREDS[1]), config={"optimizer": {"lr": 0.5}})
    with pytest.raises(ReportError, match="differ in more than the seed") as e:
        write_table([tmp_path], tmp_path / "out")
    assert str(first) in str(e.value) and str(second) in str(e.value)
    assert "optimizer.lr: 0.001 vs 0.5" in str(e.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="differ in more than the seed"):
        main([str(tmp_path), "--out", str(tmp_path / "out")])


def test_the_same_seed_twice_is_an_error(tmp_path):
    make_run(tmp_path / "x", "exp", 3, _folds(PREDS[0]))
    make_run(tmp_path / "copy", "exp", 3, _folds(PREDS[0]))
    with pytest.raises(ReportError, match="'exp' seed 3 is stored twice"):
        write_table([tmp_path / "x", tmp_path / "copy"], tmp_path / "out")


def test_missing_folds_are_refused_then_listed_per_experiment_and_seed(tmp_path, capsys):
    truth = {**TRUTH, "synthetic/sub03": [("c7", 1)], "synthetic/sub04": [("c8", 2)]}
    make_run(tmp_path / "e" / "seed_0", "exp", 0, _folds([0, 0, 1, 2, 0, 1, 1, 2], truth))
    make_run(tmp_path / "e" / "seed_1", "exp", 1, _folds([0, 1, 1, 2, 0, 1, 1, 2], truth),
             unfinished=("synthetic/sub03", "synthetic/sub04"))
    interrupted = tmp_path / "e" / "seed_1" / "folds" / "synthetic" / "sub04" / "predictions.csv"
    interrupted.unlink()  # an interrupted fold may have no predictions at all
    with pytest.raises(IncompleteExperimentError) as e:
        write_table([tmp_path / "e"], tmp_path / "out")
    assert "exp seed 1" in str(e.value) and "2 of 4 folds have no finished predictions" in str(e.value)
    assert "synthetic/sub03, synthetic/sub04" in str(e.value) and "seed 0" not in str(e.value)
    with pytest.raises(SystemExit, match="synthetic/sub03, synthetic/sub04"):
        main([str(tmp_path / "e")])
    main([str(tmp_path / "e"), "--allow-missing", "--no-figures", "--latex"])
    err = capsys.readouterr().err
    assert "exp seed 1" in err and "missing 2 folds: synthetic/sub03, synthetic/sub04" in err
    # Every table format says the run is partial: "k of n folds".
    md = (tmp_path / "e" / "table.md").read_text()
    assert "WARNING: exp seed 1 is missing 2 folds: synthetic/sub03, synthetic/sub04." in md
    assert "| exp | all | 6-8 | 2-4 of 4 | 2 |" in md and 'Folds "k of n"' in md
    assert _csv(tmp_path / "e" / "table.csv")[0]["folds"] == "2-4 of 4"
    seeds = _csv(tmp_path / "e" / "table_seeds.csv")
    assert [(s["seed"], s["folds"], s["missing"]) for s in seeds] == [
        ("0", "4", ""), ("1", "2 of 4", "synthetic/sub03 synthetic/sub04")]
    tex = (tmp_path / "e" / "table.tex").read_text()
    assert "exp & all & 6-8 & 2-4 of 4 & 2 &" in tex and "$k$ of $n$" in tex
    assert "unfinished run" in (tmp_path / "e" / "per_class.md").read_text()


def test_a_complete_table_says_nothing_of_folds_left_out(tmp_path):
    make_run(tmp_path / "e" / "seed_0", "exp", 0, _folds([0, 0, 1, 2, 0, 1]))
    main([str(tmp_path / "e"), "--no-figures", "--latex"])
    assert " of " not in _csv(tmp_path / "e" / "table.csv")[0]["folds"]
    assert "k of n" not in (tmp_path / "e" / "table.md").read_text()
    assert "$k$ of $n$" not in (tmp_path / "e" / "table.tex").read_text()
    assert "unfinished run" not in (tmp_path / "e" / "per_class.md").read_text()


def test_one_run_api_kept_for_mefnet_train(tmp_path):
    exp = make_run(tmp_path / "e", "exp", 0, _folds(PREDS[1]), unfinished=("synthetic/sub01",))
    with pytest.raises(IncompleteExperimentError, match="1 of 2 folds have no finished predictions"):
        experiment_rows(exp)
    (row,) = experiment_rows(exp, allow_missing=True)
    assert (row["folds"], row["missing_folds"], row["clips"]) == (1, 1, 3)


def _random_sweep(root: Path, rng: np.random.Generator) -> dict:
    """Two experiments x three seeds, five subjects of varying size; returns the truth used."""
    truth = {f"synthetic/sub{s:02d}": [(f"clip{s}_{i}", int(rng.integers(3))) for i in range(int(rng.integers(1, 7)))]
             for s in range(1, 6)}
    for c in range(3):  # every class present
        truth["synthetic/sub01"].append((f"extra{c}", c))
    n = sum(len(v) for v in truth.values())
    for name, lr in (("m1", 0.001), ("m2", 0.01)):
        for seed in (11, 12, 13):
            make_run(root / name / f"seed_{seed}", name, seed, _folds(rng.integers(0, 3, n).tolist(), truth),
                     config={"optimizer": {"lr": lr}})
    return truth


def test_the_table_equals_a_recomputation_from_the_predictions_files(tmp_path):
    _random_sweep(tmp_path / "sweep", np.random.default_rng(0))
    before = {p: p.read_bytes() for p in (tmp_path / "sweep").rglob("*") if p.is_file()}
    main([str(tmp_path / "sweep"), "--no-figures"])
    # Inputs untouched; outputs in the sweep folder (the one DIR given).
    assert all(p.read_bytes() == b for p, b in before.items())
    table = _csv(tmp_path / "sweep" / "table.csv")
    seeds = _csv(tmp_path / "sweep" / "table_seeds.csv")
    for name in ("m1", "m2"):
        scores = {"uf1": [], "uar": [], "accuracy": []}
        for run in sorted((tmp_path / "sweep" / name).glob("seed_*")):
            # Independent recomputation: torchmetrics updated per fold, computed once.
            f1 = MulticlassF1Score(num_classes=3, average="macro")
            rec = MulticlassRecall(num_classes=3, average="macro")
            acc = MulticlassAccuracy(num_classes=3, average="micro")
            for p in sorted(run.glob("folds/*/*/predictions.csv")):
                rows = _csv(p)
                t = torch.tensor([int(r["true"]) for r in rows])
                y = torch.tensor([int(r["pred"]) for r in rows])
                for metric in (f1, rec, acc):
                    metric.update(y, t)
            scores["uf1"].append(f1.compute().item())
            scores["uar"].append(rec.compute().item())
            scores["accuracy"].append(acc.compute().item())
            seed_row = next(s for s in seeds if s["experiment"] == name and s["run"] == f"{name}/{run.name}")
            assert float(seed_row["uf1"]) == pytest.approx(scores["uf1"][-1], abs=1e-6)
            assert float(seed_row["uar"]) == pytest.approx(scores["uar"][-1], abs=1e-6)
        row = next(r for r in table if r["experiment"] == name)
        for key, xs in scores.items():
            assert float(row[key]) == pytest.approx(np.mean(xs), abs=5e-5)
            assert float(row[f"{key}_std"]) == pytest.approx(np.std(xs, ddof=1), abs=5e-5)
        assert row["seeds"] == "3" and row["folds"] == "5"
    # Rebuilding gives the same files.
    first = (tmp_path / "sweep" / "table.md").read_text()
    main([str(tmp_path / "sweep"), "--no-figures"])
    assert (tmp_path / "sweep" / "table.md").read_text() == first


def test_confusion_png_has_the_expected_size_and_is_not_blank(tmp_path):
    import matplotlib.image as mpimg

    from mefnet.report.figures import FIGSIZE
    from mefnet.utils.figure_output import DPI

    for seed in (0, 1, 2):
        make_run(tmp_path / "e" / f"seed_{seed}", "exp", seed, _folds(PREDS[seed]))
    write_table([tmp_path / "e"], tmp_path / "out")
    img = mpimg.imread(tmp_path / "out" / "confusion_exp.png")
    assert img.shape[:2] == (round(FIGSIZE[1] * DPI), round(FIGSIZE[0] * DPI))
    gray = img[..., :3].mean(axis=2)
    assert gray.min() < 0.3 and gray.max() > 0.95 and gray.std() > 0.05  # ink on a white page
    counts = _csv(tmp_path / "out" / "confusion_exp.csv")
    assert [r["true \\ predicted"] for r in counts] == CLASSES
    assert sum(int(r[c]) for r in counts for c in CLASSES) == 18  # 6 clips x 3 seeds
    # Same predictions, byte-identical image.
    png = (tmp_path / "out" / "confusion_exp.png").read_bytes()
    write_table([tmp_path / "e"], tmp_path / "out")
    assert (tmp_path / "out" / "confusion_exp.png").read_bytes() == png


def test_composite_parts_are_the_pooled_predictions_restricted_to_each_dataset(tmp_path):
    rng = np.random.default_rng(1)
    truth = {}
    for ds, subjects in (("smic", ["s01", "s02"]), ("casme2", ["sub01", "sub02", "sub03"]), ("samm", ["006", "007"])):
        for s in subjects:
            truth[f"{ds}/{s}"] = [(f"{s}_{c}", c) for c in range(3)] + [(f"{s}_x", int(rng.integers(3)))]
    n = sum(len(v) for v in truth.values())
    preds = {seed: rng.integers(0, 3, n).tolist() for seed in (1, 2)}
    for seed in preds:
        make_run(tmp_path / "cde" / f"seed_{seed}", "megc2019-am3f", seed, _folds(preds[seed], truth))
    rows = write_table([tmp_path / "cde"], tmp_path / "cde")
    assert [(r["part"], r["title"], r["folds"], r["clips"]) for r in rows] == [
        ("all", "all", 7, 28), ("smic", "SMIC", 2, 8), ("casme2", "CASME II", 3, 12), ("samm", "SAMM", 2, 8)]
    for r in rows:
        per_seed = []
        for p in preds.values():
            pairs = [(t, y) for (k, clips), ys in zip(truth.items(), _chunks(p, truth), strict=True)
                     for (_, t), y in zip(clips, ys, strict=True) if r["part"] in ("all", k.split("/")[0])]
            per_seed.append(pooled_metrics([t for t, _ in pairs], [y for _, y in pairs], 3)["uf1"])
        assert r["uf1"] == pytest.approx(np.mean(per_seed), abs=5e-5)
        assert r["uf1_std"] == pytest.approx(np.std(per_seed, ddof=1), abs=5e-5)
    md = (tmp_path / "cde" / "table.md").read_text()
    assert "| megc2019-am3f | CASME II | 12 | 3 | 2 |" in md and "restricted to that dataset" in md
    # The parts' confusion matrices add up to the whole.
    assert np.array_equal(np.sum([r["confusion"] for r in rows[1:]], axis=0), rows[0]["confusion"])


def _chunks(flat: list[int], truth: dict) -> list[list[int]]:
    out, i = [], 0
    for clips in truth.values():
        out.append(flat[i:i + len(clips)])
        i += len(clips)
    return out


def test_default_output_folder_and_input_errors(tmp_path, capsys):
    make_run(tmp_path / "sweep" / "a", "a", 0, _folds(PREDS[0]))
    make_run(tmp_path / "sweep" / "b", "b", 0, _folds(PREDS[1]))
    main([str(tmp_path / "sweep" / "a"), str(tmp_path / "sweep" / "b"), "--no-figures"])
    assert (tmp_path / "sweep" / "table" / "table.md").is_file()
    assert "written to" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="experiment.json is missing"):
        main([str(tmp_path / "sweep" / "table")])
    with pytest.raises(SystemExit, match="no such directory"):
        main([str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="no experiment matches --name zzz; found: a, b"):
        main([str(tmp_path / "sweep"), "--name", "zzz"])
    bad = tmp_path / "sweep" / "a" / "folds" / "synthetic" / "sub02" / "predictions.csv"
    bad.write_text(bad.read_text().replace("\nsynthetic,sub02,c5,0,negative", "\nsynthetic,sub02,c5,7,negative"))
    with pytest.raises(ReportError, match=r"sub02/predictions.csv, line 3: 'true' = 7 is outside 0..2"):
        write_table([tmp_path / "sweep" / "a"], tmp_path / "o")


def test_a_rewritten_table_removes_only_the_confusion_files_of_its_own_gone_rows(tmp_path):
    """A set's table is rewritten after every run: the 2-seed ensemble's confusion matrix
    must not stay beside the 3-seed table; files the table never wrote stay."""
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    out.mkdir()
    (out / "confusion_mine.csv").write_text("the user's own file\n")
    for seed in (0, 1):
        make_run(sweep / "exp" / f"seed_{seed}", "exp", seed, _folds(PREDS[seed]))
    write_table([sweep], out, figures=False, ensemble=True)
    assert (out / "confusion_exp_ensemble_of_2_seeds.csv").is_file()
    make_run(sweep / "exp" / "seed_2", "exp", 2, _folds(PREDS[2]))
    write_table([sweep], out, figures=False, ensemble=True)
    names = sorted(p.name for p in out.glob("confusion_*"))
    assert names == ["confusion_exp.csv", "confusion_exp_ensemble_of_3_seeds.csv", "confusion_mine.csv"]
    assert (out / "confusion_mine.csv").read_text() == "the user's own file\n"
