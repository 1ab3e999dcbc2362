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

A set is a Hydra config, ``conf/reproduce/<set>.yaml``, run like any multirun by the
LOSO sweeper (:mod:`mefnet.experiment.sweeper`): its ``hydra.sweeper.params`` apply to
every experiment, ``hydra.sweeper.runs`` lists the experiments (each named by its key,
with its own overrides; ``seed=a,b,c`` gives one run per seed under that name), and the
:class:`~mefnet.experiment.hydra_callbacks.SetTable` callback writes the set's table.
``mefnet-reproduce --set synthetic`` runs ``mefnet-train reproduce=synthetic n_jobs=2``
in this process: each experiment a ``fold=all`` run, its folds in ``--n-jobs`` processes;
``fold=each`` with a launcher (``hydra/launcher=joblib``, ``slurm``) spreads the folds
instead. Finished folds are skipped, so an interrupted reproduction resumes where it
stopped. It ends with one side-by-side table (markdown and CSV) and a confusion-matrix
image per experiment under ``<paths.output_dir>/reproduce/<set>/`` (``paths.output_dir``
is ``$MEFNET_OUTPUT_DIR``, default ``outputs``), and prints where they are.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mefnet.config import CONFIG_DIR, compose
from mefnet.datasets.flow_folder import LABEL_FILE, has_au_column
from mefnet.experiment import hydra_callbacks
from mefnet.experiment.sweeper import grid, quote_override
from mefnet.experiment.train import register_plugins, task
from mefnet.utils.cli import cli, open_map_overrides

log = logging.getLogger("mefnet")

# Sets chosen without --set, in this order, when their required variables are set.
AUTOMATIC = ("paper", "flows")


def load_set(name: str) -> DictConfig:
    """The set as its config declares it: ``name``, ``params``, ``runs`` (the sweeper's),
    ``ensemble``, ``requires``, ``requires_for``, ``compare``, ``requires_aus``, ``combine``
    (its table callback's)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    path = Path(CONFIG_DIR) / "reproduce" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"reproduce set '{name}' not found ({path}); known sets: {', '.join(known)}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        hc = hydra_compose("train", overrides=[f"reproduce={name}"], return_hydra_config=True).hydra
    table = OmegaConf.to_container(hc.callbacks.reproduce, resolve=False)
    return OmegaConf.create({
        "name": name,
        "params": OmegaConf.to_container(hc.sweeper.params, resolve=False) if hc.sweeper.params else {},
        "runs": OmegaConf.to_container(hc.sweeper.runs, resolve=False),
        "ensemble": bool(table.get("ensemble", False)),
        "requires": list(table.get("requires") or []),
        "requires_for": table.get("requires_for") or {},
        "compare": table.get("compare"),
        "requires_aus": list(table.get("requires_aus") or []),
        "combine": list(table.get("combine") or []),
    })


def missing_roots(spec: DictConfig) -> list[str]:
    """The environment variables (dataset roots) that ``spec`` requires and that are not set."""
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


def flow_root(extra: list[str] | None = None) -> str | None:
    """The flow folder a set runs on: the last ``dataset.index.root=`` of ``extra``, else
    ``MEFNET_FLOW_ROOT``; None when neither is given."""
    for o in reversed(extra or []):
        if o.startswith("dataset.index.root="):
            return o.partition("=")[2] or None
    return os.environ.get("MEFNET_FLOW_ROOT") or None


def left_out(spec: DictConfig, extra: list[str] | None = None) -> list[str]:
    """Experiments whose extra dataset roots (``requires_for``, e.g. CAS(ME)^3 for the AU
    table) are unset, and the AU experiments (``requires_aus``) when the flow folder's
    labels.csv has no ``aus`` column; each reason is said in a log line."""
    out = []
    for var, names in spec.requires_for.items():
        if not os.environ.get(var):
            log.warning("reproduce: leaving out %s: they need %s (a dataset root; see README)",
                        ", ".join(names), var)
            out += [str(n) for n in names]
    names = [str(n) for n in spec.get("requires_aus", [])]
    root = flow_root(extra)
    # Without a root the set cannot run at all (its own error says so); nothing to check here.
    if names and root is not None:
        if not has_au_column(root):
            log.warning("reproduce: leaving out %s: %s has no aus column (the clips' action units; "
                        "fill it with mefnet-aus attach, see docs/action_units.md)",
                        ", ".join(names), Path(root) / LABEL_FILE)
            out += names
    return out


def experiments(spec: DictConfig, extra: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """(experiment_name, overrides) of every run of the set, in order, as the sweeper makes
    them (``fold=each`` aside); an experiment whose overrides hold ``seed=a,b,c`` gives
    one run per seed (same name). Those :func:`left_out` (given the overrides ``extra``
    of every run) are not listed."""
    skip = set(left_out(spec, extra))
    runs = {n: o for n, o in spec.runs.items() if n not in skip}
    out = []
    for job in grid(OverridesParser.create(), spec.params, [], runs):
        name = next(o.partition("=")[2] for o in reversed(job) if o.startswith("experiment_name="))
        out.append((name, job))
    return out


def reproduce(set_name: str | None = None, extra: list[str] | None = None, n_jobs: int = 2,
              only: list[str] | None = None) -> Path:
    """Run the set's sweep (finished folds are skipped), which writes the table; print it."""
    name = choose_set(set_name)
    spec = load_set(name)
    todo = experiments(spec, extra)
    names = list(dict.fromkeys(n for n, _ in todo))
    if only:
        # A full experiment name picks that experiment; any other text, every name holding it.
        names = [n for n in names if any(p == n if p in names else p in n for p in only)]
        if not names:
            known = ", ".join(dict.fromkeys(n for n, _ in todo))
            raise SystemExit(f"--only {' '.join(only)} matches no experiment of set '{name}' ({known})")
    # Overrides of Hydra itself (a launcher ...) go on the command line; the others end every
    # run's list, so they apply to each experiment last (a key of one backbone, say, would
    # not compose on the sweep's base config).
    hydra_own = [o for o in extra or [] if o.lstrip("+~").startswith(("hydra/", "hydra."))]
    per_run = [o for o in extra or [] if o not in hydra_own]
    # The folders (paths.*) go on the sweep's command line as well: the set's table
    # callback resolves its out_dir (${paths.output_dir}/reproduce/<set>) from the sweep's
    # own config, not from a run's.
    sweep_paths = [o for o in per_run if o.lstrip("+~").startswith("paths.")]
    runs = [f"hydra.sweeper.runs.{n}=[{','.join(quote_override(str(o)) for o in (*ov, *per_run))}]"
            for n, ov in spec.runs.items() if n in names and per_run]
    drop = [f"~hydra.sweeper.runs.{n}" for n in spec.runs if n not in names]
    overrides = [f"reproduce={name}", f"n_jobs={n_jobs}", *drop, *runs, *sweep_paths, *hydra_own]
    first = next(job for n, job in todo if n in names)  # as the table callback sees paths.output_dir
    out = Path(compose([*first, *(extra or [])]).paths.output_dir) / "reproduce" / name
    log.info("reproduce set '%s': %d runs: mefnet-train %s", name, sum(n in names for n, _ in todo),
             " ".join(o for o in overrides if o not in drop + runs + sweep_paths) + (" (with " + " ".join(per_run) +
                                                                     " after each run's overrides)" if per_run else ""))

    hydra_callbacks._failures.clear()
    _run_train(overrides)
    hydra_callbacks.raise_failures()  # never print an older or partial table as this run's
    print((out / "table.md").read_text())  # emotion table, then the AU table when there is one
    if spec.compare:
        print((out / "comparisons.md").read_text())
    print(f"table: {out / 'table.md'} and {out / 'table.csv'} (per seed: table_seeds.csv)")
    print(f"confusion matrices: {out}/confusion_*.png (and .csv)")
    if spec.compare:
        print(f"paired comparisons: {out / 'comparisons.md'} (and .json)")
    print(f"fold outputs (predictions, fold.json, models, logs): {out.parent.parent}/<experiment>/seed_<seed>/")
    return out


def _run_train(overrides: list[str]) -> None:
    """``mefnet-train <overrides>`` in this process (the set's config makes it a multirun)."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra


    register_plugins()
    GlobalHydra.instance().clear()
    argv = sys.argv
    sys.argv = ["mefnet-train", *overrides]
    try:
        hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")(task)()
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()


def main(argv: list[str] | None = None) -> None:
    """``mefnet-reproduce`` (what ``make reproduce-table`` runs)."""
    ap = argparse.ArgumentParser(prog="mefnet-reproduce", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  mefnet-reproduce --set flows --only megc2019-am3f --n-jobs 2")
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
    overrides = open_map_overrides([*a.overrides, *[o for o in (a.only or []) if "=" in o]])
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    start = time.perf_counter()

    cli("reproduce-table", lambda: reproduce(a.set, extra=overrides, n_jobs=a.n_jobs, only=only or None),
        argv_debug=False)
    print(f"reproduce-table finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
