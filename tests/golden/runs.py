"""The golden runs: a fixed list of tiny trainings whose outputs are hashed.

Every run names its engine (``engine=per_fold`` or ``engine=batched``, never ``auto``), so
that an engine taking on more configurations later does not change which engine produced a
hash. :func:`run_all` runs them all under one folder and returns ``{name: {file: digest}}``;
``tests/golden/golden.json`` holds the recorded digests (``python -m tests.golden.record``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import TINY_MULTI, TINY_PRETRAIN, TINY_SYNTHETIC

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("golden.json")

# fold.json / final record keys that say when, where or how fast a run went, not what it
# computed (and the package versions, which name the git commit): left out of the digest,
# as are the config's locations (``paths``, keys ending in ``dir`` or ``root``).
UNSTABLE_KEYS = frozenset({"started", "finished", "seconds", "fit_seconds", "duration_s", "time", "host",
                           "hostname", "pid", "path", "checkpoint", "model", "versions", "created", "elapsed_s",
                           "train_seconds", "predict_seconds", "wall_s", "timings", "timing"})

INNER_VAL = ["selection=inner_val", "inner_val.every_n_epochs=1", "inner_val.min_epochs=1", "inner_val.smooth=1",
             "inner_val.val_fraction=0.3", "trainer.max_epochs=3", "data.batch_size=8"]
# experiment=megc2019_flows's training options (flow augmentation, EMA, test-time mirror) on
# the tiny synthetic set.
RECIPE = ["augment=flow", "callbacks=ema", "test_time_mirror=true", "data.batch_size=8"]


def _multi(*extra: str) -> list[str]:
    """Three tiny synthetic datasets (dataset=synthetic_multi, tests/helpers.py's TINY_MULTI)."""
    return [*TINY_MULTI, *extra]


# name -> (overrides, what it covers). Runs that share an experiment_name are steps of one
# experiment (the ensemble's seeds, the final model after its LOSO).
RUNS: dict[str, tuple[list[str], str]] = {
    "pf-recipe": ([*TINY_SYNTHETIC, "engine=per_fold", *RECIPE],
                  "per_fold, emotion, loso, fixed_epochs, augment=flow, callbacks=ema, test_time_mirror"),
    "bt-recipe": ([*TINY_SYNTHETIC, "engine=batched", *RECIPE],
                  "batched, emotion, loso, fixed_epochs, augment=flow, callbacks=ema, test_time_mirror"),
    "pf-inner-refit": ([*TINY_SYNTHETIC, "engine=per_fold", *INNER_VAL, "inner_val.refit=true"],
                       "per_fold, inner_val with refit"),
    "pf-inner-keep": ([*TINY_SYNTHETIC, "engine=per_fold", *INNER_VAL, "inner_val.refit=false"],
                      "per_fold, inner_val keeping the best epoch's weights"),
    "bt-inner-refit": ([*TINY_SYNTHETIC, "engine=batched", *INNER_VAL, "inner_val.refit=true"],
                       "batched, inner_val with refit"),
    "bt-inner-keep": ([*TINY_SYNTHETIC, "engine=batched", *INNER_VAL, "inner_val.refit=false"],
                      "batched, inner_val keeping the best epoch's weights"),
    "pf-pretrain": ([*TINY_SYNTHETIC, "engine=per_fold", "backbone=am3f", *TINY_PRETRAIN],
                    "per_fold, pretrain=synthetic (AM3F-FlowNet)"),
    "bt-pretrain": ([*TINY_SYNTHETIC, "engine=batched", "backbone=am3f", *TINY_PRETRAIN],
                    "batched, pretrain=synthetic (AM3F-FlowNet)"),
    "pf-au-lodo": (_multi("engine=per_fold", "task=au", "protocol=lodo", *INNER_VAL, "task.threshold=inner_val"),
                   "per_fold, task=au, protocol=lodo, inner_val with per-AU thresholds"),
    "pf-au-fixed": (_multi("engine=per_fold", "task=au", "protocol=loso", "trainer.max_epochs=2"),
                    "per_fold, task=au, loso, fixed_epochs, fixed threshold"),
    "pf-holdout": (_multi("engine=per_fold", "protocol=holdout", "protocol.train=[synth_a]",
                          "protocol.test=[synth_b,synth_c]"),
                   "per_fold, emotion, protocol=holdout"),
    "bt-au-lodo": (_multi("engine=batched", "task=au", "protocol=lodo", *INNER_VAL, "task.threshold=inner_val"),
                   "batched, task=au, protocol=lodo, inner_val with per-AU thresholds"),
    "bt-au-fixed": (_multi("engine=batched", "task=au", "protocol=loso", "trainer.max_epochs=2"),
                    "batched, task=au, loso, fixed_epochs, fixed threshold"),
    "bt-holdout": (_multi("engine=batched", "protocol=holdout", "protocol.train=[synth_a]",
                          "protocol.test=[synth_b,synth_c]"),
                   "batched, emotion, protocol=holdout"),
    "pf-seeds": ([*TINY_SYNTHETIC, "engine=per_fold", "trainer.max_epochs=2", "experiment_name=seeds"],
                 "per_fold, a seed ensemble: seeds 1 and 2 of one experiment, one table over both"),
    "bt-seeds": ([*TINY_SYNTHETIC, "engine=batched", "trainer.max_epochs=2", "experiment_name=bt-seeds"],
                 "batched, a seed ensemble: seeds 1 and 2 of one experiment, one table over both"),
    "pf-final": ([*TINY_SYNTHETIC, "engine=per_fold", "trainer.max_epochs=2", "experiment_name=final"],
                 "per_fold, fold=none (the final model) after its LOSO"),
    "pf-resume": ([*TINY_SYNTHETIC, "engine=per_fold", "trainer.max_epochs=2", "experiment_name=resume"],
                  "per_fold, a run killed (SIGKILL) after its second fold, then resumed"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items())
                if k not in UNSTABLE_KEYS and k != "paths" and not k.endswith(("dir", "root"))}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def stable_json_digest(path: Path) -> str:
    """sha256 of a JSON record without its timings, paths and hosts."""
    data = _stable(json.loads(path.read_text()))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def experiment_digests(exp: Path) -> dict[str, str]:
    """Digests of one experiment folder: predictions.csv and fold.json of every fold, table.csv."""
    out: dict[str, str] = {}
    for fold in sorted(exp.glob("folds/**/fold.json")):
        rel = fold.parent.relative_to(exp).as_posix()
        out[f"{rel}/predictions.csv"] = sha256(fold.parent / "predictions.csv")
        out[f"{rel}/fold.json"] = stable_json_digest(fold)
    if (exp / "table.csv").exists():
        out["table.csv"] = sha256(exp / "table.csv")
    return out


def _weights_digest(model_file: Path) -> str:
    """sha256 of a model file's weights (tensor bytes in key order; the file's zip and pickle
    framing are not part of what a run computes)."""
    import torch

    payload = torch.load(model_file, map_location="cpu", weights_only=False)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    h = hashlib.sha256()
    for key in sorted(k for k, v in state.items() if isinstance(v, torch.Tensor)):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _paths(base: Path) -> list[str]:
    return [f"paths.output_dir={base / 'outputs'}", f"paths.data_dir={base / 'data'}"]


def _run(overrides: list[str]):
    from mefnet.config import absolute_paths, compose
    from mefnet.experiment.train import run

    cfg = absolute_paths(compose(overrides))
    run(cfg)
    return Path(cfg.experiment_dir)


def _plain(name: str, base: Path) -> dict[str, str]:
    overrides = RUNS[name][0]
    if not any(o.startswith("experiment_name=") for o in overrides):
        overrides = [*overrides, f"experiment_name={name}"]
    return experiment_digests(_run([*overrides, *_paths(base)]))


def _seeds(name: str, base: Path) -> dict[str, str]:
    from mefnet.report.table import write_table

    dirs = [_run([*RUNS[name][0], *_paths(base), f"seed={s}"]) for s in (1, 2)]
    out = {f"seed_{s}/{k}": v for s, d in zip((1, 2), dirs, strict=True) for k, v in experiment_digests(d).items()}
    table = base / "tables" / name
    write_table(dirs, table)
    out["ensemble/table.csv"] = sha256(table / "table.csv")
    return out


def _final(name: str, base: Path) -> dict[str, str]:
    from mefnet.experiment.final import FINAL_RECORD, final_dir

    exp = _run([*RUNS[name][0], *_paths(base)])
    out = experiment_digests(exp)
    _run([*RUNS[name][0], *_paths(base), "fold=none"])
    final = final_dir(exp)
    out["final/" + FINAL_RECORD] = stable_json_digest(final / FINAL_RECORD)
    out["final/model.pt:weights"] = _weights_digest(final / "model.pt")
    return out


def _resume(name: str, base: Path) -> dict[str, str]:
    """Killed by SIGKILL at the pause point after its second finished fold (the test seam of
    tests/test_sweep.py), then run again to the end in this process."""
    overrides = [*RUNS[name][0], *_paths(base)]
    pauses = base / "pauses"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MEFNET_PAUSE_AT": "fold:2", "MEFNET_PAUSE_DIR": str(pauses)}
    proc = subprocess.Popen([sys.executable, "-m", "mefnet.experiment.train", *overrides], cwd=base, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list(pauses.glob("fold-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise RuntimeError(f"golden run {name}: the run ended before its pause point (rc {proc.returncode})")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    exp = _run(overrides)
    return experiment_digests(exp)


KINDS: dict[str, Callable[[str, Path], dict[str, str]]] = {
    "pf-seeds": _seeds, "bt-seeds": _seeds, "pf-final": _final, "pf-resume": _resume,
}


def run_all(base: Path) -> dict[str, dict[str, str]]:
    """Run every golden run under ``base``; ``{run name: {file: sha256}}``."""
    base.mkdir(parents=True, exist_ok=True)
    return {name: KINDS.get(name, _plain)(name, base) for name in RUNS}
