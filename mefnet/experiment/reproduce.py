"""``make reproduce-table``: run the experiment set and write one results table.

Without licensed data it runs on the built-in synthetic dataset: STSTNet, and the
same recipe with permuted training labels as a sanity control (it must score near
chance; if it does not, something leaks). The table, per-experiment confusion
matrices and the fold outputs land under ``$MEFNET_OUTPUT_DIR`` (default ``outputs/``).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from mefnet.config import compose
from mefnet.experiment.train import run
from mefnet.report.table import to_markdown, write_table

SYNTHETIC_SET = ("synthetic_ststnet", "synthetic_ststnet_shuffled")


def reproduce(experiments: tuple[str, ...] = SYNTHETIC_SET, extra: list[str] | None = None,
              n_jobs: int = 2) -> Path:
    """Run each named ``conf/experiment`` recipe (resuming finished folds), then the table."""
    dirs = []
    for name in experiments:
        t = time.perf_counter()
        cfg = compose([f"experiment={name}", f"n_jobs={n_jobs}", *(extra or [])])
        run(cfg)
        dirs.append(Path(cfg.experiment_dir))
        logging.getLogger("mefnet").info("%s finished in %.0f s", name, time.perf_counter() - t)
    out = Path(os.environ.get("MEFNET_OUTPUT_DIR", "outputs")) / "reproduce"
    rows = write_table(dirs, out)
    print(to_markdown(rows))
    print(f"table: {out / 'table.md'} (and table.csv, confusion_*.csv); fold outputs: {', '.join(map(str, dirs))}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-jobs", type=int, default=int(os.environ.get("MEFNET_N_JOBS", "2")))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides applied to every experiment")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    start = time.perf_counter()
    reproduce(extra=a.overrides, n_jobs=a.n_jobs)
    print(f"reproduce-table finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
