"""Hydra multirun sweeps: fold=each, the joblib launcher, interruption and resume, SLURM config."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mefnet.config import compose
from mefnet.experiment.train import run
from mefnet.report.metrics import pooled_metrics
from mefnet.report.progress import progress
from tests.helpers import TINY_SYNTHETIC, tiny_overrides

TRAIN = [sys.executable, "-m", "mefnet.experiment.train"]


def _env(tmp: Path) -> dict:
    return {**os.environ, "MEFNET_OUTPUT_DIR": str(tmp / "out"), "MEFNET_DATA_DIR": str(tmp / "data"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _predictions(exp: Path) -> dict[str, str]:
    return {p.relative_to(exp).as_posix(): p.read_text() for p in sorted(exp.glob("folds/*/*/predictions.csv"))}


def test_fold_each_runs_every_subject_through_the_joblib_launcher(tmp_path):
    args = [*TINY_SYNTHETIC, "dataset.index.num_subjects=5", "dataset.index.num_clips=24", "experiment_name=sweep"]
    res = subprocess.run([*TRAIN, "-m", *args, "fold=each", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    exp = tmp_path / "out" / "sweep" / "seed_42"
    preds = _predictions(exp)
    assert len(preds) == 5  # one fold per subject, no list typed by hand
    # The table is what the predictions files give, pooled once.
    rows = [r for p in sorted(exp.glob("folds/*/*/predictions.csv")) for r in _rows(p)]
    m = pooled_metrics([int(r["true"]) for r in rows], [int(r["pred"]) for r in rows], 3)
    table = next(r for r in _rows(exp / "table.csv") if r["part"] == "all")
    assert float(table["uf1"]) == pytest.approx(m["uf1"], abs=5e-5)
    assert float(table["uar"]) == pytest.approx(m["uar"], abs=5e-5)
    assert float(table["accuracy"]) == pytest.approx(m["accuracy"], abs=5e-5)
    assert int(table["clips"]) == 24 and "table:" in res.stderr + res.stdout
    # Parallel fold jobs predict exactly what one sequential fold=all run does, and the
    # table the sweep's callback writes is the one fold=all writes.
    seq = compose([*args, f"paths.output_dir={tmp_path / 'seq'}", f"paths.data_dir={tmp_path / 'data'}"])
    run(seq)
    assert _predictions(Path(seq.experiment_dir)) == preds
    _same_tables(exp, Path(seq.experiment_dir))


def _same_tables(a: Path, b: Path) -> None:
    for name in ("table.csv", "table.md"):
        assert (a / name).read_text() == (b / name).read_text(), name


def test_a_two_fold_sweep_through_the_submitit_launcher_gives_the_sequential_table(tmp_path):
    """The cluster launcher's code path (submitit, as hydra/launcher=slurm uses it), with
    local processes: every fold a submitit job, the table from the sweep's callback."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    args = [*TINY_SYNTHETIC, "dataset.index.num_subjects=2", "dataset.index.num_clips=12",
            "trainer.max_epochs=2", "experiment_name=submitit"]
    res = subprocess.run([*TRAIN, "-m", *args, "fold=each", "hydra/launcher=submitit_local",
                          "hydra.launcher.timeout_min=15"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    exp = tmp_path / "out" / "submitit" / "seed_42"
    # Each fold ran as a submitit job: its pickled call and result are in the job folder.
    results = sorted(exp.glob(".submitit/*/*_result.pkl"))
    assert len(results) == 2, sorted(p.name for p in exp.glob(".submitit/*/*"))
    assert len(list(exp.glob("folds/*/*/fold.json"))) == 2
    seq = compose([*args, f"paths.output_dir={tmp_path / 'seq'}", f"paths.data_dir={tmp_path / 'data'}"])
    run(seq)
    assert _predictions(Path(seq.experiment_dir)) == _predictions(exp)
    _same_tables(exp, Path(seq.experiment_dir))


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_table(tmp_path):
    args = [*TINY_SYNTHETIC, "dataset.index.num_subjects=6", "dataset.index.num_clips=30",
            "trainer.max_epochs=40", "experiment_name=resume"]
    exp = tmp_path / "out" / "resume" / "seed_42"
    # The sweep stops after its second finished fold (a pause point, not a race against a
    # polling loop) and is killed there.
    pauses = tmp_path / "pauses"
    proc = subprocess.Popen([*TRAIN, "-m", *args, "fold=each"], cwd=tmp_path,
                            env={**_env(tmp_path), "MEFNET_PAUSE_AT": "fold:2", "MEFNET_PAUSE_DIR": str(pauses)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list(pauses.glob("fold-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it reached the pause point"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(exp.glob("folds/*/*/fold.json"))
    assert len(finished) == 2, "the kill should land after exactly two folds"
    assert not (exp / "table.csv").exists()
    p = progress(exp, workers=2)  # what mefnet-progress shows of the stopped sweep
    assert (p["done"], p["total"], p["left"]) == (len(finished), 6, 6 - len(finished))
    assert p["eta_s"] == pytest.approx(p["mean_fold_s"] * p["left"] / 2) and p["eta_s"] > 0
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for f in finished
            for p in (f, f.parent / "predictions.csv")}

    res = subprocess.run([*TRAIN, "-m", *args, "fold=each"], cwd=tmp_path, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for p, (mtime, data) in kept.items():  # nothing finished was recomputed or rewritten
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data, p
    assert len(list(exp.glob("folds/*/*/fold.json"))) == 6

    clean = compose([*args, f"paths.output_dir={tmp_path / 'clean'}", f"paths.data_dir={tmp_path / 'data'}"])
    run(clean)
    clean_dir = Path(clean.experiment_dir)
    assert (exp / "table.csv").read_text() == (clean_dir / "table.csv").read_text()
    assert (exp / "table.md").read_text() == (clean_dir / "table.md").read_text()
    assert _predictions(exp) == _predictions(clean_dir)


def test_the_loso_sweeper_is_the_default_and_keys_fold_directories_by_experiment(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mefnet.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose("train", overrides=tiny_overrides(tmp_path, "x"), return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.mefnet_loso.LosoSweeper"
    # No timestamps: the sweep directory is the experiment's, each job's is its fold's.
    assert cfg.hydra.sweep.dir == str(tmp_path / "outputs" / "x" / "seed_42") == cfg.experiment_dir
    assert cfg.hydra.sweep.subdir == "folds/all" and cfg.hydra.run.dir == cfg.experiment_dir


def test_a_seed_sweep_leaves_no_empty_directory_for_the_default_seed(tmp_path):
    # Hydra's launcher creates hydra.sweep.dir as the sweep's own config resolves it (the
    # default experiment name, seed 42); no job here writes there, so the sweeper removes it
    # again (and the name's directory it created for it).
    args = [*TINY_SYNTHETIC, "fold=sub01", "trainer.max_epochs=1"]
    res = subprocess.run([*TRAIN, "-m", *args, "experiment_name=a,b", "seed=1,2"], cwd=tmp_path,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*")) == [
        "a/seed_1", "a/seed_2", "b/seed_1", "b/seed_2"]
    # A directory that was there before the sweep is left alone, even when empty.
    (out / "keep" / "seed_42").mkdir(parents=True)
    res = subprocess.run([*TRAIN, "-m", *args, "experiment_name=keep", "seed=1"], cwd=tmp_path,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in (out / "keep").iterdir()) == ["seed_1", "seed_42"]


def test_slurm_launcher_config_composes_into_sbatch_parameters(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    # submitit looks for srun before writing a job file; no job is submitted here.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mefnet.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                                                "hydra.launcher.mem_gb=4"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.cpus_per_task == 2 and launcher.timeout_min == 120 and launcher.array_parallelism == 128
    assert launcher.submitit_folder == f"{cfg.experiment_dir}/.submitit/%j"
    # The parameters the launcher hands to submitit become these #SBATCH lines.
    executor = submitit.AutoExecutor(folder=str(tmp_path / "jobs"), cluster="slurm")
    base = {"timeout_min", "nodes", "tasks_per_node", "cpus_per_task", "mem_gb", "gpus_per_node", "name"}
    skip = {"_target_", "submitit_folder", "max_num_timeout", "setup"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in launcher.items()
                                  if k not in skip and v is not None})
    text = executor._executor._make_submission_file_text("python -m mefnet.experiment.train", "uid")
    for line in ("#SBATCH --cpus-per-task=2", "#SBATCH --partition=cpu", "#SBATCH --time=120",
                 "#SBATCH --mem=4GB", "#SBATCH --nodes=1"):
        assert line in text, line


def test_a_sweep_list_with_the_set_table_callback_gives_the_fold_all_tables(tmp_path):
    """The reproduction sets' machinery (a sweep list, fold=each, the SetTable callback)
    through the basic launcher: the same tables as one fold=all run per experiment."""
    from mefnet.report.table import write_table

    args = [*TINY_SYNTHETIC, "dataset.index.num_subjects=3", "dataset.index.num_clips=15", "trainer.max_epochs=2"]
    runs = {"set-ststnet": ["backbone=ststnet"], "set-ststnet-seeds": ["backbone=ststnet", "seed=1,2"]}
    listed = ",".join(f"{n}:[{','.join(repr(o) for o in ov)}]" for n, ov in runs.items())
    res = subprocess.run([*TRAIN, "-m", *args, "fold=each", f"hydra.sweeper.runs={{{listed}}}",
                          "+hydra.callbacks.set={_target_:mefnet.experiment.hydra_callbacks.SetTable,"
                          f"name:tiny,out_dir:'{tmp_path / 'set'}',ensemble:true}}"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list((tmp_path / "out").glob("set-*/seed_*/folds/*/*/fold.json"))) == 3 * 3
    dirs = []
    for name, overrides in (("set-ststnet", []), ("set-ststnet-seeds", ["seed=1"]), ("set-ststnet-seeds", ["seed=2"])):
        cfg = compose([*args, "backbone=ststnet", *overrides, f"experiment_name={name}",
                       f"paths.output_dir={tmp_path / 'seq'}", f"paths.data_dir={tmp_path / 'data'}"])
        run(cfg)
        dirs.append(Path(cfg.experiment_dir))
        _same_tables(tmp_path / "out" / name / f"seed_{cfg.seed}", Path(cfg.experiment_dir))
    write_table(dirs, tmp_path / "seq-set", ensemble=True)
    _same_tables(tmp_path / "set", tmp_path / "seq-set")
    rows = [(r["experiment"], r["seeds"]) for r in _rows(tmp_path / "set" / "table.csv")]
    assert rows == [("set-ststnet", "1"), ("set-ststnet-seeds", "2"), ("set-ststnet-seeds (ensemble of 2 seeds)", "2")]


def test_a_table_callback_that_fails_fails_the_command(tmp_path):
    """Hydra turns a callback's exception into a warning; mefnet-train must still exit 1 and
    name it, so a sweep whose table could not be written never looks like a success."""
    blocker = tmp_path / "set"
    blocker.write_text("a file where the set table's folder should go\n")
    args = [*TINY_SYNTHETIC, "dataset.index.num_subjects=2", "dataset.index.num_clips=8", "trainer.max_epochs=1",
            "backbone=ststnet", "experiment_name=cb-fail"]
    res = subprocess.run([*TRAIN, "-m", *args, "fold=each",
                          "+hydra.callbacks.set={_target_:mefnet.experiment.hydra_callbacks.SetTable,"
                          f"name:tiny,out_dir:'{blocker}'}}"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "callbacks failed" in res.stderr and "SetTable.on_multirun_end" in res.stderr
    assert "Traceback" not in res.stderr
    assert blocker.read_text().startswith("a file")  # nothing the user had is overwritten
    assert len(list((tmp_path / "out").glob("cb-fail/seed_*/folds/*/*/fold.json"))) == 2  # the folds are kept


def test_callback_failures_are_raised_once_and_named():
    from mefnet.experiment import hydra_callbacks
    from mefnet.runs.store import ReportError

    hydra_callbacks._failures.clear()
    table = hydra_callbacks.SetTable(name="x", out_dir="/nonexistent/never")
    table.dirs = ["/nonexistent/experiment"]
    with pytest.raises(FileNotFoundError):
        table.on_multirun_end(config=None)
    with pytest.raises(ReportError, match="SetTable.on_multirun_end"):
        hydra_callbacks.raise_failures()
    hydra_callbacks.raise_failures()  # raised once: nothing left


def test_a_failing_job_is_logged_when_it_ends_and_the_sweep_fails_at_the_end(tmp_path):
    """The launcher goes on after a failed job and the sweep raises only when every job has
    returned (a set of an hour): the failure is logged as the job ends, before the next."""
    args = [*TINY_SYNTHETIC, "fold=sub01", "trainer.max_epochs=1", "backbone=ststnet"]
    res = subprocess.run([*TRAIN, "-m", *args, "+hydra.sweeper.runs={bad:['backbone.dropout=7'],good:[]}"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stderr[-3000:]
    log = res.stdout  # Hydra's log (the console handler writes to stdout)
    failed = log.index("job failed (backbone.dropout=7 experiment_name=bad")
    assert "dropout probability has to be between 0 and 1, but got 7" in log[failed:failed + 1000]
    assert failed < log.index("#1 : experiment_name=good")  # said before the next job starts
    assert (tmp_path / "out" / "good" / "seed_42" / "folds" / "synthetic" / "sub01" / "fold.json").is_file()
    assert "Traceback" not in res.stderr and "Error executing job" not in res.stdout + res.stderr


def test_a_single_run_prints_its_error_once(tmp_path):
    """No "the sweep goes on" for a run that is no sweep, and not Hydra's "Error executing
    job" line before mefnet-train's own."""
    (tmp_path / "flows").mkdir()
    res = subprocess.run([*TRAIN, "dataset=flow_folder", f"dataset.index.root={tmp_path / 'flows'}", "logger=none"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert out.count("labels.csv does not exist") == 1, out[-3000:]
    assert res.stderr.startswith("mefnet-train: ") or "\nmefnet-train: " in res.stderr
    assert "sweep goes on" not in out and "Error executing job" not in out and "Traceback" not in out
