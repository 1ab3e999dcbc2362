"""The `flows` reproduction set: chosen from MEFNET_FLOW_ROOT, seeds and their ensemble,
the STSTNet anchor, ablations, part rows; mefnet-reproduce keeps its Hydra overrides."""

from __future__ import annotations

import csv

import pytest

from mefnet.config import compose
from mefnet.experiment import reproduce as rep
from tests.flow_trees import make_flow_folder
from tests.helpers import TINY_PRETRAIN

ROOTS = ("MEFNET_CASME2_ROOT", "MEFNET_SAMM_ROOT", "MEFNET_SMIC_ROOT")


def test_a_flow_folder_chooses_the_flows_set(monkeypatch):
    for var in (*ROOTS, "MEFNET_FLOW_ROOT"):
        monkeypatch.delenv(var, raising=False)
    assert rep.choose_set(None) == "synthetic"
    with pytest.raises(SystemExit, match="MEFNET_FLOW_ROOT"):
        rep.choose_set("flows")
    monkeypatch.setenv("MEFNET_FLOW_ROOT", "/data/flows")
    assert rep.choose_set(None) == "flows"
    for var in ROOTS:
        monkeypatch.setenv(var, f"/data/{var}")
    assert rep.choose_set(None) == "paper"  # the raw datasets' set when all of them are there
    assert rep.choose_set("flows") == "flows"


def test_the_flows_set_has_seeds_the_anchor_and_the_ablations():
    spec = rep.load_set("flows")
    runs = rep.experiments(spec)
    am3f = [o for n, o in runs if n == "megc2019-am3f"]
    assert [compose(o).seed for o in am3f] == [1, 2, 3] and spec.ensemble is True
    names = list(dict.fromkeys(n for n, _ in runs))
    for needle in ("megc2019-ststnet-paper", "megc2019-am3f-ce", "no-msff", "msff-not-residual",
                   "no-spatial-attention", "no-mofrw", "uv-only"):
        assert any(needle in n for n in names), needle
    anchor = compose(dict(runs)["megc2019-ststnet-paper"])
    assert (anchor.trainer.max_epochs, anchor.optimizer.lr, anchor.dataset.name) == (800, 5e-5, "flow_folder")
    recipe = compose(am3f[0])
    assert recipe.backbone._target_.endswith("AM3FFlowNet") and recipe.loss._target_.endswith("LogitAdjustedLoss")
    assert recipe.experiment_name == "megc2019-am3f" and recipe.dataset.name == "flow_folder"
    assert compose(dict(runs)["megc2019-am3f-ce"]).loss._target_.endswith("CrossEntropyLoss")
    # The recipe's residual MSFF, and the row that shows what the residual adds.
    assert recipe.backbone.msff_residual is True and recipe.backbone.msff == "multi"
    assert compose(dict(runs)["megc2019-am3f-msff-not-residual"]).backbone.msff_residual is False
    # The recipe's pretraining on synthetic clips, and the row without it.
    assert recipe.pretrain.data.index.num_clips == 2000 and recipe.trainer.max_epochs == 29
    assert "pretrain" not in compose(dict(runs)["megc2019-am3f-no-pretrain"])
    # The OFF-ApexNet anchor: its honest re-run's recipe at the affordable 300 epochs, named so.
    off = compose(dict(runs)["megc2019-offapexnet-300ep"])
    assert off.backbone._target_.endswith("OFFApexNet") and (off.trainer.max_epochs, off.optimizer.lr) == (300, 1e-4)
    assert (off.data.batch_size, off.selection, off.loss._target_) == (256, "fixed_epochs", "mefnet.losses.CrossEntropyLoss")
    assert compose(["experiment=offapexnet_paper"]).trainer.max_epochs == 3000
    # The previous composite recipe, a named baseline row.
    previous = compose(dict(runs)["megc2019-am3f-previous-recipe"])
    assert (previous.selection, previous.trainer.max_epochs, previous.data.batch_size) == ("inner_val", 30, 64)
    assert previous.dataset.name == "flow_folder" and "pretrain" not in previous
    # The recommended ensemble's two members, 3 seeds each, and their combination's rows.
    nomsff = [compose(o) for n, o in runs if n == "megc2019-am3f-nomsff"]
    ststnet = [compose(o) for n, o in runs if n == "megc2019-ststnet"]
    assert [c.seed for c in nomsff] == [1, 2, 3] and [c.seed for c in ststnet] == [1, 2, 3]
    assert nomsff[0].backbone.msff == "off" and ststnet[0].backbone._target_.endswith("STSTNet")
    assert list(spec.combine) == ["megc2019-am3f-nomsff+megc2019-ststnet"]
    # The recipe is compared with each anchor and the previous recipe.
    assert spec.compare.reference == "megc2019-am3f" and list(spec.compare.anchors) == [
        "megc2019-ststnet-paper", "megc2019-offapexnet-300ep", "megc2019-am3f-previous-recipe"]


def test_the_flows_set_has_au_rows_only_when_the_flow_folder_has_aus(tmp_path, monkeypatch, caplog):
    spec = rep.load_set("flows")
    au_rows = list(spec.requires_aus)
    assert au_rows and set(au_rows) <= set(spec.runs)
    without = make_flow_folder(tmp_path / "plain", {"smic": 1, "casme2": 1}, clips_per_subject=3)
    with_aus = make_flow_folder(tmp_path / "aus", {"smic": 1, "casme2": 1}, clips_per_subject=3,
                                aus={0: "4", 1: "12", 2: "1+2"})
    monkeypatch.setenv("MEFNET_FLOW_ROOT", str(without))
    names = {n for n, _ in rep.experiments(spec)}
    assert "megc2019-am3f" in names and not names & set(au_rows)
    assert f"leaving out {', '.join(au_rows)}: {without / 'labels.csv'} has no aus column" in caplog.text
    monkeypatch.setenv("MEFNET_FLOW_ROOT", str(with_aus))
    todo = rep.experiments(spec)
    assert set(au_rows) <= {n for n, _ in todo}
    # An explicit dataset.index.root wins over the environment, as it does for the runs.
    assert not {n for n, _ in rep.experiments(spec, [f"dataset.index.root={without}"])} & set(au_rows)
    for name in au_rows:
        cfg = compose(next(o for n, o in todo if n == name))
        assert cfg.task.name == "au" and cfg.dataset.name == "flow_folder" and cfg.protocol.name == "loso"
        assert cfg.selection == "inner_val" and cfg.inner_val.metric == "uar" and cfg.task.threshold == "fixed"
    seeds = [compose(o).seed for n, o in todo if n == au_rows[0]]
    control = [compose(o) for n, o in todo if n in au_rows[1:]]
    assert seeds == [1, 2, 3] and [(c.shuffle_train_labels, c.seed) for c in control] == [(True, s) for s in seeds]


def test_mefnet_reproduce_keeps_its_overrides_wherever_they_are_written(monkeypatch):
    calls = []
    monkeypatch.setattr(rep, "reproduce", lambda *a, **k: calls.append((a, k)))
    rep.main(["--set", "flows", "--only", "megc2019-am3f", "trainer.max_epochs=2", "--n-jobs", "1", "seed=7"])
    (args, kw), = calls
    assert args == ("flows",) and kw["only"] == ["megc2019-am3f"] and kw["n_jobs"] == 1
    assert kw["extra"] == ["seed=7", "trainer.max_epochs=2"] or kw["extra"] == ["trainer.max_epochs=2", "seed=7"]


@pytest.mark.slow
def test_the_flows_set_runs_seeds_and_writes_the_ensemble_and_part_rows(tmp_path, monkeypatch, capsys):
    root = make_flow_folder(tmp_path / "flows", {"smic": 2, "casme2": 2})
    for var in ROOTS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MEFNET_FLOW_ROOT", str(root))
    monkeypatch.delenv("MEFNET_OUTPUT_DIR", raising=False)
    monkeypatch.delenv("MEFNET_REPRODUCE_SET", raising=False)
    # paths.output_dir on the command line alone decides where everything goes, the set's
    # table included (not ./outputs of the working folder).
    monkeypatch.chdir(tmp_path / "flows")
    rep.main(["--only", "megc2019-am3f", "megc2019-am3f-previous-recipe", "--n-jobs", "1", "trainer.max_epochs=2",
              "inner_val.min_epochs=1", "preprocessing.n_jobs=1",
              "logger=none", "save_checkpoint=false", "save_model=false", f"paths.output_dir={tmp_path / 'outputs'}",
              f"paths.data_dir={tmp_path / 'data'}", "backbone.widths=[4,8]", *TINY_PRETRAIN])
    out = tmp_path / "outputs" / "reproduce" / "flows"
    assert not (tmp_path / "flows" / "outputs").exists()
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [(r["experiment"], r["part"], r["seeds"]) for r in rows] == [
        ("megc2019-am3f", "all", "3"), ("megc2019-am3f", "smic", "3"), ("megc2019-am3f", "casme2", "3"),
        ("megc2019-am3f (ensemble of 3 seeds)", "all", "3"), ("megc2019-am3f (ensemble of 3 seeds)", "smic", "3"),
        ("megc2019-am3f (ensemble of 3 seeds)", "casme2", "3"),
        ("megc2019-am3f-previous-recipe", "all", "1"), ("megc2019-am3f-previous-recipe", "smic", "1"),
        ("megc2019-am3f-previous-recipe", "casme2", "1"),
    ]
    assert rows[0]["seed_list"] == "1 2 3" and rows[0]["uf1_std"] != "" and rows[3]["ensemble"] == "3"
    assert all(r["uf1_ci_low"] != "" and float(r["uf1_ci_low"]) <= float(r["uf1"]) + 1e-4 for r in rows)
    assert "| megc2019-am3f (ensemble of 3 seeds) | CASME II |" in (out / "table.md").read_text()
    # The recipe against each anchor: the previous recipe compared (seeds 1, 2, 3 each against
    # its one run), the anchors not run here named.
    printed = capsys.readouterr().out
    assert "## Paired comparison of megc2019-am3f against each anchor" in printed
    assert "| megc2019-am3f-previous-recipe | 1, 2, 3 | 24 | 4 |" in printed
    assert "Not compared: megc2019-ststnet-paper: not in the table" in printed
    assert (out / "comparisons.json").is_file()
    with pytest.raises(SystemExit, match="matches no experiment"):
        rep.main(["--only", "nonexistent", "trainer.max_epochs=1"])
