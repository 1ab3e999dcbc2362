"""Long work says what it does (fold heartbeats, mefnet-progress's running folds, flow
progress, predict / pictures lines); third-party noise is silenced.

The tests on a tiny LOSO in worker processes are slow (a minute or more on 2 busy cores):
`make test-slow` and CI.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from mefnet.report.progress import main as progress_main
from mefnet.report.progress import running
from mefnet.utils.quiet import plural
from tests.helpers import TINY_SYNTHETIC, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
NOISE = ["is powered by Hydra", "Parallel(n_jobs=", "[ WARN:", "findDecoder", "exists and is not empty",
         "(1 test clips)", "A worker stopped"]


def _python(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def _tiny_parallel(tmp: Path, *extra: str) -> str:
    """A tiny LOSO in 2 worker processes (loky), with a heartbeat line every epoch."""
    done = _python(["-m", "mefnet.experiment.train", *[o for o in TINY_SYNTHETIC if o != "logger=none"],
                    "n_jobs=2", "selection=inner_val", "inner_val.min_epochs=1", *extra], tmp,
                   MEFNET_OUTPUT_DIR="out", MEFNET_DATA_DIR="data", MEFNET_HEARTBEAT_S="0")
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory):
    """The default engine (batched): 2 groups of 2 folds, one fit per worker process."""
    tmp = tmp_path_factory.mktemp("quiet")
    return tmp, _tiny_parallel(tmp)


@pytest.mark.slow
def test_each_batched_group_beats_from_its_worker_and_every_fold_keeps_its_running_file(parallel_run):
    tmp, log = parallel_run
    for group in ("2 folds (synthetic/sub01 ... synthetic/sub02)", "2 folds (synthetic/sub03 ... synthetic/sub04)"):
        beats = [line for line in log.splitlines() if group in line and " epoch " in line]
        inner = [b for b in beats if "(inner-validation run)" in b]
        assert len(inner) == 3 and all(" val uf1 " in b and "(mean)" in b for b in inner), beats
        assert any(" loss " in b and "inner" not in b for b in beats), beats
    # Each fold's running.json: its own last epoch and loss (mefnet-progress reads it).
    exp = tmp / "out" / "synthetic-ststnet-cross_entropy" / "seed_42"
    for sub in ("sub01", "sub02", "sub03", "sub04"):
        state = json.loads((exp / "folds" / "synthetic" / sub / "running.json").read_text())
        done = json.loads((exp / "folds" / "synthetic" / sub / "fold.json").read_text())
        assert state["fold"] == f"synthetic/{sub}" and state["loss"] > 0
        assert state["epoch"] == state["max_epochs"] == done["selection"]["best_epoch"]
    assert running(exp) == []


@pytest.mark.slow
def test_every_fold_beats_from_its_worker_process_with_epoch_loss_and_validation(tmp_path):
    log = _tiny_parallel(tmp_path, "engine=per_fold")
    tmp = tmp_path
    for sub in ("sub01", "sub02", "sub03", "sub04"):
        beats = [line for line in log.splitlines() if f"fold synthetic/{sub} " in line and " epoch " in line]
        # the inner-validation run (with its validation score), then the refit (3 epochs each)
        inner = [b for b in beats if "(inner-validation run)" in b]
        assert len(inner) == 3 and all(" val uf1 " in b and " loss " in b for b in inner), beats
        assert any("epoch 3/3  loss " in b and "inner" not in b for b in beats), beats
    # Finished folds leave their last heartbeat, which mefnet-progress does not list as running.
    exp = tmp / "out" / "synthetic-ststnet-cross_entropy" / "seed_42"
    state = json.loads((exp / "folds" / "synthetic" / "sub01" / "running.json").read_text())
    assert state["epoch"] == 3 and state["max_epochs"] == 3 and state["loss"] > 0
    assert running(exp) == []


@pytest.mark.slow
def test_a_tiny_run_prints_none_of_the_silenced_noise(parallel_run):
    tmp, log = parallel_run
    for noise in NOISE:
        assert noise not in log, noise
    # Resume after a lost fold: Lightning's "logs directory exists" warning stays silent.
    (tmp / "out" / "synthetic-ststnet-cross_entropy" / "seed_42" / "folds" / "synthetic" / "sub02" / "fold.json").unlink()
    again = _python(["-m", "mefnet.experiment.train", *[o for o in TINY_SYNTHETIC if o != "logger=none"],
                     "selection=inner_val", "inner_val.min_epochs=1"], tmp,
                    MEFNET_OUTPUT_DIR="out", MEFNET_DATA_DIR="data")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 of 4 folds already finished" in again.stdout + again.stderr
    for noise in NOISE:
        assert noise not in again.stdout + again.stderr, noise


def test_help_has_our_header_not_hydras_banner(tmp_path):
    done = _python(["-m", "mefnet.experiment.train", "--help"], tmp_path)
    assert done.returncode == 0
    assert "powered by Hydra" not in done.stdout and done.stdout.startswith("mefnet-train: leave-one-subject-out")


@pytest.mark.slow
def test_predict_says_what_it_does_and_opencv_stays_quiet(parallel_run, tmp_path):
    tmp, _ = parallel_run
    frames = sorted(next((tmp / "data" / "synthetic").glob("*/sub01")).glob("*/img*.png"))
    cv2.imwrite(str(tmp_path / "onset.png"), cv2.imread(str(frames[0])))
    cv2.imwrite(str(tmp_path / "apex.png"), cv2.imread(str(frames[2])))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "clips.csv").write_text("clip,onset,apex\ngood,onset.png,apex.png\nbad,broken.png,apex.png\n")
    exp = tmp / "out" / "synthetic-ststnet-cross_entropy"
    done = _python(["-c", "import sys; from mefnet.inference.predict import main; sys.exit(main())",
                    str(exp), "--batch", "clips.csv"], tmp_path)
    assert done.returncode == 1, done.stderr  # one clip failed, named
    err = done.stderr
    assert "mefnet-predict: 2 clips with 4 ststnet fold models of seed_42, averaged; each clip: face crop" in err
    assert "[1/2] good" in err and "[2/2] bad" in err and "broken.png" in err
    assert "1 clip predicted in" in err
    assert json.loads(done.stdout)["failed"] == 1
    for noise in NOISE:
        assert noise not in err, noise


def test_mefnet_progress_lists_the_folds_running_now(tmp_path, capsys):
    exp = tmp_path / "e" / "seed_1"
    (exp / "folds" / "d" / "s1").mkdir(parents=True)
    (exp / "folds" / "d" / "s2").mkdir(parents=True)
    (exp / "experiment.json").write_text(json.dumps({"name": "e", "seed": 1, "folds": ["d/s1", "d/s2", "d/s3"], "class_names": ["a", "b"], "config": {}}))
    (exp / "folds" / "d" / "s1" / "fold.json").write_text(json.dumps({"status": "complete", "elapsed_s": 10}))
    (exp / "folds" / "d" / "s1" / "running.json").write_text(json.dumps({"epoch": 9, "max_epochs": 9}))
    now = time.time()
    (exp / "folds" / "d" / "s2" / "running.json").write_text(json.dumps(
        {"fold": "d/s2", "stage": "", "epoch": 4, "max_epochs": 40, "loss": 0.51234, "val": {"uf1": 0.6},
         "updated": now - 5}))
    progress_main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| e | 1 | 1/3 |" in out and "Running now" in out
    running_rows = [line for line in out.splitlines() if "d/s" in line]
    assert running_rows == [running_rows[0]] and "| d/s2 | 4/40 | 0.512 | uf1 0.600 | 5 s ago |" in running_rows[0]
    (exp / "folds" / "d" / "s2" / "running.json").write_text(json.dumps(
        {"epoch": 4, "max_epochs": 40, "updated": now - 7200}))
    progress_main([str(tmp_path), "--stale", "60"])
    assert "(stale: stopped?)" in capsys.readouterr().out


def test_the_batched_engine_gives_mefnet_progress_a_time_estimate_before_any_fold_finishes(tmp_path, monkeypatch, capsys):
    """The batched engine finishes its folds together, at the end of the group's fit, so
    no finished fold can time the others: the estimate comes from each member's heartbeat."""
    from mefnet.config import absolute_paths, compose
    from mefnet.experiment.train import run
    from mefnet.report.progress import progress
    from mefnet.training.heartbeat import Heartbeat

    cfg = absolute_paths(compose(tiny_overrides(tmp_path, "eta", "engine=batched")))
    seen: list[dict] = []
    beat = Heartbeat.on_train_epoch_end

    def probe(self, trainer, pl_module):
        beat(self, trainer, pl_module)
        if trainer.current_epoch == 1 and not seen:  # after the second epoch, mid-fit
            seen.append(progress(cfg.experiment_dir))
            progress_main([str(cfg.experiment_dir)])

    monkeypatch.setattr(Heartbeat, "on_train_epoch_end", probe)
    run(cfg)
    (mid,) = seen
    assert mid["done"] == 0 and mid["left"] == 4 and mid["eta_from"] == "heartbeats"
    assert 0 < mid["eta_s"] < 3600
    assert "(from the running folds)" in capsys.readouterr().out
    assert progress(cfg.experiment_dir)["eta_from"] in ("", "finished folds")  # all done: no estimate needed


def test_a_heartbeat_estimate_is_the_slowest_running_fold_plus_the_folds_not_started():
    from mefnet.report.progress import heartbeat_eta

    beats = [{"epoch": 2, "max_epochs": 10, "started": 0.0, "updated": 20.0, "stage": ""},  # 80 s left
             {"epoch": 5, "max_epochs": 10, "started": 0.0, "updated": 25.0, "stage": ""}]  # 25 s left
    assert heartbeat_eta(beats, left=2) == 80.0
    assert heartbeat_eta(beats, left=4, workers=2) == 80.0 + (100.0 + 50.0) / 2 * 2 / 2
    inner = [{"epoch": 2, "max_epochs": 10, "started": 0.0, "updated": 20.0, "stage": "inner-validation run"}]
    assert heartbeat_eta(inner, left=1) == 80.0 + 100.0  # the refit counted as a whole fit
    assert math.isnan(heartbeat_eta([{"epoch": 0, "max_epochs": 10, "started": 0.0, "updated": 1.0}], left=1))


def test_flow_progress_without_a_terminal_is_a_log_line(caplog):
    from mefnet.preprocessing.features import _LogProgress

    bar = _LogProgress(4, every_s=0.0)
    with caplog.at_level(logging.INFO, logger="mefnet"):
        for _ in range(4):
            bar.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("input maps: 1/4 clips (25%), about") and len(lines) == 3  # not after the last


def test_plural():
    assert plural(1, "test clip") == "1 test clip" and plural(3, "test clip") == "3 test clips"
