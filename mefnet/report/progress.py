"""``mefnet-progress <dirs...>``: folds finished, and time left, of running or stopped experiments.

Read from the experiment directories alone (``experiment.json`` and each finished fold's
``fold.json``), so it works for every launcher (a local sweep, SLURM jobs on a cluster)
while the sweep runs or after it stopped.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mefnet.experiment.store import ReportError, find_runs, fold_records, read_experiment


def progress(exp_dir: str | Path, workers: int = 1) -> dict:
    """Folds finished / total of one experiment and an estimate of the time left.

    The estimate is the mean time of a finished fold times the folds left, divided by
    the workers running them.
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
    return {"name": record.get("name", exp_dir.name), "seed": record.get("seed"), "done": len(times),
            "total": total, "left": left, "mean_fold_s": mean,
            "eta_s": mean * left / max(1, workers) if times else math.nan}


def duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", help="experiment directories or folders above them")
    ap.add_argument("--workers", type=int, default=1, help="fold jobs running at once (for the estimate)")
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
        print(f"| {p['name']} | {p['seed']} | {p['done']}/{p['total']} | {duration(p['mean_fold_s'])} | "
              f"{'done' if not p['left'] else duration(p['eta_s'])} |")


if __name__ == "__main__":
    main()
