"""``make reproduce-table``: run the paper's experiment set and write its results table.

The set is a file in ``conf/reproduce/``:

- ``paper``: used when the dataset roots are configured (``MEFNET_CASME2_ROOT``,
  ``MEFNET_SAMM_ROOT``, ``MEFNET_SMIC_ROOT``, in the environment or in ``local.mk``; see
  README): the MEGC2019 composite with its SMIC / CASME II / SAMM parts, five-class
  CASME II and SAMM, AM3F-FlowNet against the baselines, and the loss and module
  ablations.
- ``synthetic``: otherwise, the same models and ablations on the built-in synthetic
  dataset, sized to finish in about 10 minutes on a 2-core CPU, plus a shuffled-label
  control that must score near chance.

Each experiment is one leave-one-subject-out run (folds in ``--n-jobs`` processes);
finished folds are skipped, so an interrupted reproduction resumes where it stopped.
It ends with one side-by-side table (markdown and CSV) and a confusion-matrix image per
experiment under ``$MEFNET_OUTPUT_DIR/reproduce/<set>/``, and prints where they are.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mefnet.config import CONFIG_DIR, compose
from mefnet.experiment.train import run
from mefnet.report.table import to_markdown, write_table

log = logging.getLogger("mefnet")


def load_set(name: str) -> DictConfig:
    path = Path(CONFIG_DIR) / "reproduce" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"reproduce set '{name}' not found ({path}); known sets: {', '.join(known)}")
    return OmegaConf.load(path)


def missing_roots(spec: DictConfig) -> list[str]:
    return [v for v in spec.get("requires", []) if not os.environ.get(v)]


def choose_set(requested: str | None) -> str:
    """The set to run: as requested, else ``paper`` if its dataset roots are set, else ``synthetic``."""
    if requested:
        missing = missing_roots(load_set(requested))
        if missing:
            raise SystemExit(f"reproduce set '{requested}' needs {', '.join(missing)} (dataset roots; see README)")
        return requested
    return "paper" if not missing_roots(load_set("paper")) else "synthetic"


def experiments(spec: DictConfig) -> list[tuple[str, list[str]]]:
    """(experiment_name, overrides) of every experiment of the set, in order."""
    out = []
    for group in spec.groups:
        for name, overrides in group.experiments.items():
            out.append((str(name), [*spec.get("common", []), *group.get("common", []), *overrides]))
    return out


def reproduce(set_name: str | None = None, extra: list[str] | None = None, n_jobs: int = 2,
              only: list[str] | None = None) -> Path:
    """Run every experiment of the set (resuming finished folds), then write the table."""
    name = choose_set(set_name)
    spec = load_set(name)
    todo = experiments(spec)
    if only:
        todo = [(n, o) for n, o in todo if any(p in n for p in only)]
    log.info("reproduce set '%s': %d experiments", name, len(todo))
    dirs = []
    for k, (exp_name, overrides) in enumerate(todo, start=1):
        t = time.perf_counter()
        cfg = compose([*overrides, f"experiment_name={exp_name}", f"n_jobs={n_jobs}", *(extra or [])])
        run(cfg)
        dirs.append(Path(cfg.experiment_dir))
        log.info("[%d/%d] %s finished in %.0f s", k, len(todo), exp_name, time.perf_counter() - t)
    out = Path(os.environ.get("MEFNET_OUTPUT_DIR", "outputs")) / "reproduce" / name
    rows = write_table(dirs, out)
    print(to_markdown(rows))
    print(f"table: {out / 'table.md'} and {out / 'table.csv'} (per seed: table_seeds.csv)")
    print(f"confusion matrices: {out}/confusion_*.png (and .csv)")
    print(f"fold outputs (predictions, fold.json, models, logs): {Path(dirs[0]).parent.parent if dirs else out}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default=os.environ.get("MEFNET_REPRODUCE_SET") or None,
                    help="conf/reproduce/<set>.yaml (default: paper if the dataset roots are set, else synthetic)")
    ap.add_argument("--n-jobs", type=int, default=int(os.environ.get("MEFNET_N_JOBS", "2")),
                    help="folds run in parallel processes")
    ap.add_argument("--only", nargs="*", help="run only experiments whose name contains one of these")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides applied to every experiment")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    start = time.perf_counter()
    from mefnet.cli import cli

    cli("reproduce-table", lambda: reproduce(a.set, extra=a.overrides, n_jobs=a.n_jobs, only=a.only),
        argv_debug=False)
    print(f"reproduce-table finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
