"""What a new user reaches first, through the real console entry points (issue "The first
hour"): a recipe never trains on other data than the user's in silence, map-like options
take `key='{...}'`, debug runs never break `mefnet-table outputs`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flow_trees import make_flow_folder

BIN = Path(sys.executable).parent
ROOTS = [k for k in os.environ if k.startswith("MEFNET_") and k.endswith("_ROOT")]


def script(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e .)")
    return found


def mefnet(cmd: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: int = 600) -> subprocess.CompletedProcess:
    """``cmd args`` as a user types it in ``cwd``; the environment's dataset roots removed
    unless ``env`` sets them."""
    base = {k: v for k, v in os.environ.items() if k not in ROOTS}
    base.update({"MEFNET_OUTPUT_DIR": str(cwd / "outputs"), "MEFNET_DATA_DIR": str(cwd / "data")})
    return subprocess.run([script(cmd), *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def test_the_ststnet_anchor_trains_on_the_flow_folder_the_environment_names(tmp_path):
    flows = make_flow_folder(tmp_path / "flows", {"smic": 2, "casme2": 1}, clips_per_subject=6)
    run = mefnet("mefnet-train", "experiment=ststnet_paper", "trainer.max_epochs=1", "preprocessing.n_jobs=1",
                 cwd=tmp_path, env={"MEFNET_FLOW_ROOT": str(flows)})
    assert run.returncode == 0, run.stderr[-3000:]
    exp = tmp_path / "outputs" / "flow_folder-ststnet-paper" / "seed_42"
    record = json.loads((exp / "experiment.json").read_text())
    assert record["dataset"] == "flow_folder" and record["num_clips"] == 18
    assert "SYNTHETIC" not in run.stdout + run.stderr
    assert "flows: 18 clips, 3 subjects" in run.stdout + run.stderr  # the folder's name, its clips
    assert not (tmp_path / "outputs" / "synthetic-ststnet-paper").exists()


def test_the_ststnet_anchor_without_a_flow_folder_refuses_in_one_line(tmp_path):
    run = mefnet("mefnet-train", "experiment=ststnet_paper", cwd=tmp_path)
    assert run.returncode == 1
    assert "MEFNET_FLOW_ROOT" in run.stderr and "Traceback" not in run.stderr
    assert not list((tmp_path / "outputs").rglob("experiment.json"))


def test_a_synthetic_run_says_so_first_when_a_dataset_root_is_set_and_debug_runs_stay_out_of_the_table(tmp_path):
    flows = make_flow_folder(tmp_path / "flows", {"smic": 2}, clips_per_subject=3)
    tiny = ["dataset.index.num_subjects=4", "dataset.index.num_clips=18", "dataset.index.frame_size=48",
            "dataset.index.frames_per_clip=[5,6]", "preprocessing.n_jobs=1", "trainer.max_epochs=1"]
    debug = mefnet("mefnet-train", "debug=default", *tiny, cwd=tmp_path, env={"MEFNET_FLOW_ROOT": str(flows)})
    assert debug.returncode == 0, debug.stderr[-3000:]
    first = [line for line in (debug.stdout + debug.stderr).splitlines() if "[mefnet]" in line][:3]
    assert any("SYNTHETIC" in line and "MEFNET_FLOW_ROOT" in line for line in first), first
    # The same experiment name, run for real: the table of outputs/ is the real run's.
    real = mefnet("mefnet-train", *tiny, "logger=none", cwd=tmp_path)
    assert real.returncode == 0, real.stderr[-3000:]
    assert "SYNTHETIC" not in real.stdout + real.stderr  # no dataset root in this one's environment
    name = "synthetic-ststnet-cross_entropy"
    assert (tmp_path / "outputs" / "debug" / name / "seed_42" / "experiment.json").is_file()
    table = mefnet("mefnet-table", "outputs", "--no-figures", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert f"| {name} | all | 18 | 4 |" in table.stdout
    assert "debug" in table.stderr and str(Path("outputs") / "debug") in table.stderr
    # Asked for by their folder, the debug runs make a table of their own.
    only_debug = mefnet("mefnet-table", "outputs/debug", "--no-figures", cwd=tmp_path)
    assert only_debug.returncode == 0, only_debug.stderr
    assert f"| {name} | all |" in only_debug.stdout


def test_a_class_map_is_given_on_the_command_line_as_written_in_the_docs(tmp_path):
    from mefnet.datasets.synthetic import SyntheticSpec, generate

    root = generate(SyntheticSpec(seed=3, num_subjects=3, num_clips=12, frame_size=48, frames_per_clip=(5, 6)),
                    tmp_path / "frames")
    names = {"negative": "anger", "positive": "happiness", "surprise": "surprise"}
    rows = list(csv.DictReader((root / "annotations.csv").open()))
    for r in rows:
        r["Emotion"] = names[r["Emotion"]]
    with (root / "clips.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run = mefnet("mefnet-train", "dataset=frames_csv", f"dataset.index.root={root}",
                 "dataset.index.class_map={anger: negative, happiness: positive, surprise: null}",
                 "fold=frames_csv/sub01", "trainer.max_epochs=1", "preprocessing.n_jobs=1", "logger=none",
                 cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "outputs" / "frames_csv-ststnet-cross_entropy" / "seed_42" /
                         "experiment.json").read_text())
    assert record["class_names"] == ["negative", "positive"]
    assert record["num_clips"] == sum(r["Emotion"] != "surprise" for r in rows)


def test_map_overrides_reach_hydra_as_merges_and_others_are_left_alone():
    from mefnet.config import compose
    from mefnet.utils.cli import open_map_overrides

    given = ["dataset.index.class_map={a: b}", "dataset.index.parts.mine={root: /r}", "+x.class_map={a: b}",
             "dataset.index.root=/r", "preprocessing.face_options={margin: 0.2}", "dataset.index.clas_map={a: b}"]
    assert open_map_overrides(given) == [
        "++dataset.index.class_map={a: b}", "++dataset.index.parts.mine={root: /r}", "+x.class_map={a: b}",
        "dataset.index.root=/r", "++preprocessing.face_options={margin: 0.2}", "dataset.index.clas_map={a: b}"]
    cfg = compose(["dataset=composite", "dataset.index.parts.mine={_target_: my.loader, root: /r}",
                   "preprocessing.face_options={margin: 0.2}"])
    assert cfg.dataset.index.parts.mine.root == "/r" and "casme2" in cfg.dataset.index.parts
    assert cfg.preprocessing.face_options == {"margin": 0.2}


def test_the_synthetic_warning_names_only_set_roots():
    from mefnet.config import compose
    from mefnet.experiment.train import synthetic_data_warning

    synthetic = compose([])
    assert synthetic_data_warning(synthetic, {}) is None
    assert synthetic_data_warning(synthetic, {"MEFNET_FLOW_ROOT": ""}) is None
    said = synthetic_data_warning(synthetic, {"MEFNET_SMIC_ROOT": "/data/smic", "MEFNET_OUTPUT_DIR": "o"})
    assert "SYNTHETIC" in said and "MEFNET_SMIC_ROOT=/data/smic" in said and "OUTPUT" not in said
    assert synthetic_data_warning(compose(["dataset=synthetic_multi"]), {"MEFNET_SMIC_ROOT": "/d"})
    assert synthetic_data_warning(compose(["dataset=flow_folder"]), {"MEFNET_FLOW_ROOT": "/d"}) is None


def test_the_log_says_which_engine_and_why_and_has_no_raw_warnings(tmp_path):
    flows = make_flow_folder(tmp_path / "flows", {"smic": 2}, clips_per_subject=6)
    with (flows / "labels.csv").open("a") as f:
        f.write("smic,s01,s01_99,0\n")  # no such image: skipped under on_bad_clip=skip
    run = mefnet("mefnet-train", "dataset=flow_folder", f"dataset.index.root={flows}",
                 "dataset.index.on_bad_clip=skip", "trainer.max_epochs=1", "logger=none", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "engine=auto: batched" in out and "this config allows it" in out
    skipped = [line for line in out.splitlines() if "s01_99" in line]
    assert skipped and all(line.startswith("[") and "[WARNING]" in line for line in skipped), skipped
    assert "Warning:" not in out and "warnings.warn" not in out
    assert "(12 clips, 2 folds)" in out
    per_fold = mefnet("mefnet-train", "dataset=flow_folder", f"dataset.index.root={flows}",
                      "dataset.index.on_bad_clip=skip", "trainer.max_epochs=1", "logger=none",
                      "optimizer._target_=torch.optim.ASGD", "experiment_name=asgd", cwd=tmp_path)
    assert per_fold.returncode == 0, per_fold.stderr[-3000:]
    assert "engine=auto: per_fold, one Lightning fit per fold (engine=batched: optimizer 'torch.optim.ASGD'" \
        in per_fold.stdout


def test_debug_overfit_prints_no_lightning_warnings(tmp_path):
    run = mefnet("mefnet-train", "debug=overfit", "dataset.index.num_subjects=4", "dataset.index.num_clips=18",
                 "dataset.index.frame_size=48", "dataset.index.frames_per_clip=[5,6]", "trainer.max_epochs=2",
                 "preprocessing.n_jobs=1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "requested to overfit" not in out and "DataLoader" not in out and "Warning" not in out
    assert "(18 clips, 4 folds)" in out


def test_plurals():
    from mefnet.utils.quiet import plural

    assert plural(1, "fold") == "1 fold" and plural(2, "epoch") == "2 epochs" and plural(0, "clip") == "0 clips"


def test_a_second_trial_with_the_same_pretraining_config_makes_nothing_again(tmp_path):
    from tests.helpers import TINY_PRETRAIN, TINY_SYNTHETIC

    common = [*TINY_SYNTHETIC, *TINY_PRETRAIN, "trainer.max_epochs=1", "fold=synthetic/sub01"]
    first = mefnet("mefnet-train", *common, "experiment_name=trial-a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout + first.stderr
    assert "making 12 synthetic pretraining clips, once: ~" in out
    assert "pretraining corpus: 12 synthetic clips of 3 subjects (not the experiment's data)" in out
    # Another variant (its own fine-tuning epochs and name), the same pretraining config.
    second = mefnet("mefnet-train", *common, "trainer.max_epochs=2", "experiment_name=trial-b", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    out = second.stdout + second.stderr
    assert "making" not in out and "pretraining corpus" not in out and "pretraining ststnet on" not in out
    assert "weights of this pretraining config and seed 42 are cached, reused" in out


def test_a_recipe_run_on_other_data_names_that_data():
    from mefnet.config import compose

    assert compose(["experiment=megc2019_flows"]).experiment_name == "megc2019-am3f"
    assert compose(["experiment=megc2019_flows", "dataset=synthetic"]).experiment_name == "synthetic-megc2019-am3f"
    assert compose(["experiment=smic_dev", "dataset=megc2019"]).experiment_name == \
        "megc2019-smic-ststnet-cross_entropy"
    assert compose(["experiment=ststnet_paper", "dataset=synthetic"]).experiment_name == "synthetic-ststnet-paper"


def test_pretrain_none_is_a_quick_trial_of_a_pretraining_recipe(tmp_path):
    from mefnet.config import compose
    from mefnet.experiment.plan import pretrain_spec
    from mefnet.experiment.train import config_fingerprint
    from mefnet.training.pretrain import pretrained_weights

    quick = compose(["experiment=megc2019_flows", "pretrain=none"])
    assert not quick.get("pretrain") and pretrain_spec(quick) is None
    assert pretrained_weights(pretrain_spec(quick), ["negative", "positive", "surprise"]) is None
    assert config_fingerprint(quick) == config_fingerprint(compose(["experiment=megc2019_flows", "~pretrain"]))
