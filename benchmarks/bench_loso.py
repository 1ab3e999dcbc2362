"""Wall time of a composite-sized leave-one-subject-out run (68 subjects, 442 clips, 28x28).

Run: ``python benchmarks/bench_loso.py [--backbones am3f ststnet] [--workers 1 2]
[--out DIR] [overrides ...]``. Prints a table; asserts nothing.

The clips come from the built-in synthetic generator sized like the MEGC2019 composite
(68 subjects, 442 clips, the composite's 3 classes); their flows are computed once
into the flow cache first (timed separately, not part of the LOSO figures). Every LOSO
run then trains and predicts all 68 folds from scratch with ``n_jobs`` worker
processes, exactly as ``mefnet-train fold=all n_jobs=N`` does; its wall time includes
everything (process start, model building, training, prediction, writing files, table).

The recipe is the composite recipe of ``conf/reproduce/paper.yaml`` unless overridden
on the command line (e.g. ``trainer.max_epochs=100``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hydra.utils import instantiate

from mefnet.config import compose
from mefnet.experiment.reproduce import load_set
from mefnet.experiment.train import _absolute_paths, run
from mefnet.preprocessing.features import Preprocessing, build_features

COMPOSITE = ["dataset=synthetic", "dataset.index.num_subjects=68", "dataset.index.num_clips=442",
             "dataset.index.frame_size=64", "logger=none", "save_checkpoint=false"]


def composite_recipe() -> list[str]:
    spec = load_set("paper")
    group = next(g for g in spec.groups if "dataset=megc2019" in g.common)
    return [*spec.common, *(c for c in group.common if not c.startswith("dataset"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", nargs="+", default=["am3f", "ststnet"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    a = ap.parse_args()
    work = Path(a.out or tempfile.mkdtemp(prefix="mefnet-bench-loso-"))
    recipe = [*composite_recipe(), *a.overrides]
    common = [*COMPOSITE, f"paths.output_dir={work / 'out'}", f"paths.data_dir={work / 'data'}", *recipe]

    cfg = _absolute_paths(compose([*common, "experiment_name=prefill"]))
    t = time.perf_counter()
    index = instantiate(cfg.dataset.index)
    build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir, n_jobs=2)
    prep_s = time.perf_counter() - t
    print(f"dataset: {len(index)} clips, {len(index.subjects)} subjects; frames + flow cache {prep_s:.0f} s "
          f"(once, not in the figures below)")
    print(f"recipe: {' '.join(recipe)}")
    print()
    print("| backbone | workers | folds | wall | per fold | UF1 |")
    print("|---|---|---|---|---|---|")
    for backbone in a.backbones:
        for workers in a.workers:
            name = f"bench-{backbone}-{workers}w"
            cfg = compose([*common, f"backbone={backbone}", f"n_jobs={workers}", f"experiment_name={name}"])
            t = time.perf_counter()
            rows = run(cfg)
            wall = time.perf_counter() - t
            row = next(r for r in rows if r["part"] == "all")
            print(f"| {backbone} | {workers} | {row['folds']} | {wall / 60:.1f} min ({wall:.0f} s) | "
                  f"{wall / row['folds']:.1f} s | {row['uf1']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
