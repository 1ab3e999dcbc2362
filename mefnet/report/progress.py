"""``mefnet-progress <dirs...>``: folds finished, and time left, of running or stopped experiments.

Read from the experiment directories alone (``experiment.json``, each finished fold's
``fold.json`` and each running fold's heartbeat ``running.json``), so it works for every
launcher (a local sweep, SLURM jobs on a cluster) while the sweep runs or after it stopped.
Below the table, the folds running now: epoch, training loss, inner-validation score and
how long ago their last epoch ended (a fold silent for longer than ``--stale`` minutes is
marked: its job may have stopped).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from mefnet.runs.heartbeat import RUNNING, read_running
from mefnet.runs.store import (
    FOLD_DONE,
    FOLDS,
    ReportError,
    find_runs,
    fold_records,
    read_experiment,
)
from mefnet.utils.quiet import duration


def progress(exp_dir: str | Path, workers: int = 1) -> dict:
    """Folds finished / total of one experiment and an estimate of the time left.

    The estimate is the mean time of a finished fold times the folds left, divided by
    the workers running them. Before any fold has finished (the batched engine finishes
    its folds together, at the end of the group's fit) it comes from the running folds'
    heartbeats instead (:func:`heartbeat_eta`); ``eta_from`` says which.
    """
    exp_dir = Path(exp_dir)
    record = read_experiment(exp_dir)
    times = []
    for rec in fold_records(exp_dir).values():
        try:
            times.append(float(rec.get("elapsed_s", 0.0)))
        except (TypeError, ValueError):
            continue
    total = len(record["folds"])
    left = max(0, total - len(times))
    mean = sum(times) / len(times) if times else math.nan
    eta, source = (mean * left / max(1, workers), "finished folds") if times else (math.nan, "")
    if not times and left:
        eta = heartbeat_eta(running(exp_dir), left, workers)
        source = "" if math.isnan(eta) else "heartbeats"
    return {"name": record.get("name", exp_dir.name), "seed": record.get("seed"), "done": len(times),
            "total": total, "left": left, "mean_fold_s": mean, "eta_s": eta, "eta_from": source}


def heartbeat_eta(beats: list[dict], left: int, workers: int = 1) -> float:
    """Seconds left, from the heartbeats of running folds (NaN when none has finished an
    epoch yet): each running fold's epochs left at the pace of its fit so far (an
    inner-validation run is followed by a refit, counted as a whole fit: an upper bound),
    the slowest of them (a batched group's folds finish together), plus the folds not
    started yet at the running folds' mean time per fit, shared by ``workers``."""
    left_s, fit_s = [], []
    for b in beats:
        try:
            epoch, total = int(b["epoch"]), int(b["max_epochs"])
            per_epoch = (float(b["updated"]) - float(b["started"])) / epoch
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        if per_epoch <= 0 or total < epoch:
            continue
        refit = per_epoch * total if b.get("stage") == "inner-validation run" else 0.0
        left_s.append(per_epoch * (total - epoch) + refit)
        fit_s.append(per_epoch * total + refit)
    if not left_s:
        return math.nan
    unstarted = max(0, left - len(beats))
    return max(left_s) + (sum(fit_s) / len(fit_s)) * unstarted / max(1, workers)


def running(exp_dir: str | Path) -> list[dict]:
    """The heartbeats of the folds of ``exp_dir`` that are not finished (fold order)."""
    out = []
    for beat in sorted((Path(exp_dir) / FOLDS).glob(f"*/*/{RUNNING}")):
        if (beat.parent / FOLD_DONE).is_file():
            continue
        state = read_running(beat.parent)
        if state is not None:
            out.append({**state, "fold": f"{beat.parent.parent.name}/{beat.parent.name}"})
    return out


def main(argv: list[str] | None = None) -> None:
    """``mefnet-progress``: the folds finished, running and left of each experiment, and the time left."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  mefnet-progress outputs --workers 2")
    ap.add_argument("dirs", nargs="+", help="experiment directories or folders above them")
    ap.add_argument("--workers", type=int, default=1, help="fold jobs running at once (for the estimate)")
    ap.add_argument("--stale", type=float, default=30.0,
                    help="minutes without a heartbeat after which a running fold is marked stale (default 30)")
    a = ap.parse_args(argv)
    try:
        runs = find_runs(a.dirs)
        rows = [progress(d, a.workers) for d in runs]
    except (FileNotFoundError, ReportError) as e:
        raise SystemExit(f"mefnet-progress: {e}") from None
    if not runs:
        raise SystemExit(f"no experiment.json found under {' '.join(a.dirs)}")
    print("| experiment | seed | folds done | mean fold | time left |")
    print("|---|---:|---:|---:|---:|")
    for p in rows:
        left = "done" if not p["left"] else duration(p["eta_s"])
        if p["left"] and p["eta_from"] == "heartbeats":
            left = f"~{left} (from the running folds)"
        print(f"| {p['name']} | {p['seed']} | {p['done']}/{p['total']} | {duration(p['mean_fold_s'])} | {left} |")
    now = time.time()
    beats = [(p, b) for p, d in zip(rows, runs, strict=True) for b in running(d)]
    if beats:
        print("\nRunning now:\n")
        print("| experiment | seed | fold | epoch | loss | validation | last epoch ended |")
        print("|---|---:|---|---:|---:|---|---|")
        for p, b in beats:
            stage = f" ({b['stage']})" if b.get("stage") else ""
            loss = "–" if b.get("loss") is None else f"{b['loss']:.3f}"
            val = ", ".join(f"{k} {v:.3f}" for k, v in (b.get("val") or {}).items() if v is not None) or "–"
            ago = max(0.0, now - float(b.get("updated", now)))
            late = " (stale: stopped?)" if ago > 60 * a.stale else ""
            print(f"| {p['name']} | {p['seed']} | {b['fold']}{stage} | {b.get('epoch', 0)}/{b.get('max_epochs', '?')} | "
                  f"{loss} | {val} | {duration(ago)} ago{late} |")


if __name__ == "__main__":
    main()
