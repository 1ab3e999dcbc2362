"""A partial experiment (some folds never finished) is still usable: mefnet-predict,
mefnet-export and mefnet-pictures --dataset use the fold models it has and say how many."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mefnet.inference.checkpoint import MODEL_FILE, load_models
from mefnet.inference.export import main as export_main
from mefnet.inference.pictures import main as pictures_main
from mefnet.inference.predict import main as predict_main
from tests.helpers import trained_am3f

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> tuple[Path, str, int]:
    """(a copy of the tiny AM3F experiment with one fold folder deleted, that fold, its clips)."""
    finished = trained_am3f(tmp_path_factory.getbasetemp() / "am3f-experiment")
    exp = tmp_path_factory.mktemp("partial") / finished.name
    shutil.copytree(finished, exp)
    folds = json.loads((exp / "experiment.json").read_text())["folds"]
    gone = folds[2]
    with (exp / "folds" / gone / "predictions.csv").open() as f:
        clips = sum(1 for _ in f) - 1
    shutil.rmtree(exp / "folds" / gone)
    return exp, gone, clips


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> list[str]:
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("pair")
    paths = []
    for name in ("onset.png", "apex.png"):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(out / name)
        paths.append(str(out / name))
    return paths


def test_the_fold_models_that_exist_are_used_and_counted(partial):
    exp, gone, _ = partial
    told: list[str] = []
    models = load_models(exp, say=told.append)
    assert len(models) == 5 and gone not in {m.fold for m in models}
    (line,) = told
    assert "5 of 6 folds have a model; using those" in line and f"no {MODEL_FILE} in: {gone}" in line


def test_predict_on_a_partial_experiment(partial, pair, capsys):
    exp, gone, _ = partial
    code = predict_main([str(exp), "--images", *pair, "--name", "c"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert len(result["model_files"]) == 5 and not any(gone in f for f in result["model_files"])
    assert "5 of 6 folds have a model; using those" in out.err and "fold models" in out.err
    assert result["clips"][0]["pred_name"] in result["class_names"]


@pytest.mark.slow
def test_the_predict_console_script_takes_a_partial_experiment(partial, pair, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = Path(sys.executable).parent / "mefnet-predict"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "mefnet.inference.predict"]
    proc = subprocess.run([*command, str(partial[0]), "--images", *pair, "--out", str(tmp_path / "p.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "5 of 6 folds have a model; using those" in proc.stderr
    assert len(json.loads((tmp_path / "p.json").read_text())["model_files"]) == 5


def test_export_of_a_partial_experiment(partial, tmp_path, capsys):
    exp, _, _ = partial
    out = tmp_path / "model.torchscript.pt"
    assert export_main([str(exp), "--torchscript", str(out)]) == 0
    captured = capsys.readouterr()
    assert "5 of 6 folds have a model; using those" in captured.err
    assert "exporting an ensemble of 5 models" in captured.out and out.is_file()


def test_dataset_pictures_of_a_partial_experiment(partial, tmp_path, capsys):
    exp, _, clips = partial
    out = tmp_path / "classes"
    assert pictures_main([str(exp), "--dataset", "--out", str(out)]) == 0
    assert "5 of 6 folds have a model; using those" in capsys.readouterr().err
    record = json.loads((out / "pictures.json").read_text())["dataset"]
    # Each model explains its own held-out subject: every clip but the lost fold's.
    assert record["models"] == 5 and record["clips"] == 60 - clips


def test_an_experiment_without_any_fold_model_is_still_refused(partial, tmp_path, capsys):
    exp = tmp_path / "empty"
    shutil.copytree(partial[0], exp)
    for f in exp.glob(f"folds/*/*/{MODEL_FILE}"):
        f.unlink()
    assert export_main([str(exp), "--torchscript", str(tmp_path / "m.pt")]) == 1
    assert "has no model.pt in any of its 6 fold folders" in capsys.readouterr().err
