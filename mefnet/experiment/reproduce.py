"""``make reproduce-table``: run the paper's experiment set and write its results table.

The set is a file in ``conf/reproduce/``:

- ``paper``: used when the dataset roots are configured (``MEFNET_CASME2_ROOT``,
  ``MEFNET_SAMM_ROOT``, ``MEFNET_SMIC_ROOT``, in the environment or in ``local.mk``; see
  README): the MEGC2019 composite with its SMIC / CASME II / SAMM parts, five-class
  CASME II and SAMM, AM3F-FlowNet against the baselines, and the loss and module
  ablations.
- ``flows``: used when ``MEFNET_FLOW_ROOT`` points at a composite flow folder (and the
  three roots above are not all set): the recommended composite recipe
  (``experiment=megc2019_flows``) with several seeds and their ensemble, the STSTNet
  anchor (``experiment=ststnet_paper``), the loss and module ablations, with a row per
  source dataset in the folder (SMIC / CASME II / SAMM, or the subset it holds).
- ``synthetic``: otherwise, the same models and ablations on the built-in synthetic
  dataset, sized to finish in about 10 minutes on a 2-core CPU, plus a shuffled-label
  control that must score near chance.

Each experiment is one leave-one-subject-out run (folds in ``--n-jobs`` processes), or
one per seed when its overrides hold ``seed=a,b,c``;
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
from mefnet.report.table import write_table

log = logging.getLogger("mefnet")

# Sets chosen without --set, in this order, when their required variables are set.
AUTOMATIC = ("paper", "flows")


def load_set(name: str) -> DictConfig:
    path = Path(CONFIG_DIR) / "reproduce" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"reproduce set '{name}' not found ({path}); known sets: {', '.join(known)}")
    return OmegaConf.load(path)


def missing_roots(spec: DictConfig) -> list[str]:
    return [v for v in spec.get("requires", []) if not os.environ.get(v)]


def choose_set(requested: str | None) -> str:
    """The set to run: as requested, else ``paper`` if its dataset roots are set, else
    ``flows`` if a flow folder is set (``MEFNET_FLOW_ROOT``), else ``synthetic``."""
    if requested:
        missing = missing_roots(load_set(requested))
        if missing:
            raise SystemExit(f"reproduce set '{requested}' needs {', '.join(missing)} (dataset roots; see README)")
        return requested
    for name in AUTOMATIC:
        if not missing_roots(load_set(name)):
            return name
    return "synthetic"


def _seeds(override: str) -> list[str] | None:
    """The seeds of a ``seed=a,b,c`` override (None for any other override)."""
    key, _, value = override.partition("=")
    if key.strip() != "seed" or "," not in value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def experiments(spec: DictConfig) -> list[tuple[str, list[str]]]:
    """(experiment_name, overrides) of every run of the set, in order; an experiment
    whose overrides hold ``seed=a,b,c`` gives one run per seed (same name).

    A group with its own ``requires`` (dataset roots beyond the set's, e.g. CAS(ME)^3 for
    the AU table) is left out, with a log line naming the variables, when they are unset.
    """
    out = []
    for group in spec.groups:
        missing = missing_roots(group)
        if missing:
            log.warning("reproduce: skipping '%s': it needs %s (dataset roots; see README)",
                        group.get("title", "a group"), ", ".join(missing))
            continue
        for name, overrides in group.experiments.items():
            full = [str(o) for o in (*spec.get("common", []), *group.get("common", []), *overrides)]
            multi = [(i, s) for i, o in enumerate(full) if (s := _seeds(o))]
            if not multi:
                out.append((str(name), full))
                continue
            i, seeds = multi[-1]
            out += [(str(name), [*full[:i], f"seed={s}", *full[i + 1:]]) for s in seeds]
    return out


def reproduce(set_name: str | None = None, extra: list[str] | None = None, n_jobs: int = 2,
              only: list[str] | None = None) -> Path:
    """Run every experiment of the set (resuming finished folds), then write the table."""
    name = choose_set(set_name)
    spec = load_set(name)
    todo = experiments(spec)
    if only:
        names = {n for n, _ in todo}
        # A full experiment name picks that experiment; any other text, every name holding it.
        todo = [(n, o) for n, o in todo if any(p == n if p in names else p in n for p in only)]
        if not todo:
            known = ", ".join(dict.fromkeys(n for n, _ in experiments(spec)))
            raise SystemExit(f"--only {' '.join(only)} matches no experiment of set '{name}' ({known})")
    ensemble = bool(spec.get("ensemble", False))
    log.info("reproduce set '%s': %d runs", name, len(todo))
    out = Path(os.environ.get("MEFNET_OUTPUT_DIR", "outputs")) / "reproduce" / name
    # Every run's config first: a bad override stops here, before anything trains.
    cfgs = [compose([*overrides, f"experiment_name={exp_name}", f"n_jobs={n_jobs}", *(extra or [])])
            for exp_name, overrides in todo]
    dirs = []
    for k, ((exp_name, _), cfg) in enumerate(zip(todo, cfgs, strict=True), start=1):
        t = time.perf_counter()
        run(cfg)
        dirs.append(Path(cfg.experiment_dir))
        log.info("[%d/%d] %s seed %s finished in %.0f s", k, len(todo), exp_name, cfg.seed, time.perf_counter() - t)
        if k < len(todo):  # the table so far, so an interrupted run still has one
            write_table(dirs, out, figures=False, ensemble=ensemble)
    write_table(dirs, out, ensemble=ensemble)
    print((out / "table.md").read_text())  # emotion table, then the AU table when there is one
    print(f"table: {out / 'table.md'} and {out / 'table.csv'} (per seed: table_seeds.csv)")
    print(f"confusion matrices: {out}/confusion_*.png (and .csv)")
    print(f"fold outputs (predictions, fold.json, models, logs): {Path(dirs[0]).parent.parent if dirs else out}")
    return out


def main(argv: list[str] | None = None) -> None:
    """``mefnet-reproduce`` (what ``make reproduce-table`` runs)."""
    ap = argparse.ArgumentParser(prog="mefnet-reproduce", description=__doc__.split("\n")[0])
    ap.add_argument("--set", default=os.environ.get("MEFNET_REPRODUCE_SET") or None,
                    help="conf/reproduce/<set>.yaml (default: paper if the dataset roots are set, else synthetic)")
    ap.add_argument("--n-jobs", type=int, default=int(os.environ.get("MEFNET_N_JOBS", "2")),
                    help="folds run in parallel processes")
    ap.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                    help="run only these experiments (a full name: that one; other text: every name containing it); Hydra overrides "
                         "(key=value) given after it still apply")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides applied to every experiment (key=value)")
    a = ap.parse_intermixed_args(argv)
    # --only takes names; anything with '=' is a Hydra override, wherever it was written.
    only = [o for o in (a.only or []) if "=" not in o]
    overrides = [*a.overrides, *[o for o in (a.only or []) if "=" in o]]
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    start = time.perf_counter()
    from mefnet.cli import cli

    cli("reproduce-table", lambda: reproduce(a.set, extra=overrides, n_jobs=a.n_jobs, only=only or None),
        argv_debug=False)
    print(f"reproduce-table finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
