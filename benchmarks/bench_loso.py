"""Wall time of a composite-sized leave-one-subject-out run (68 subjects, 442 clips, 28x28).

Run: ``python benchmarks/bench_loso.py [--backbones am3f ststnet] [--engines per_fold batched]
[--seeds 1 5] [--workers 2] [--recipe experiment=megc2019_flows] [--out DIR] [overrides ...]``.
Prints a table; asserts nothing.

The clips come from the built-in synthetic generator sized like the MEGC2019 composite
(68 subjects, 442 clips, the composite's 3 classes); their flows are computed once
into the flow cache first, and the recipe's pretrained weights of every network and seed
are computed next (both timed separately, not part of the LOSO figures: they are made
once and cached, like the flows). Every LOSO
run then trains and predicts all 68 folds from scratch with ``n_jobs`` worker
processes, exactly as ``mefnet-train fold=all n_jobs=N engine=E`` does; its wall time
includes everything (process start, model building, training, prediction, writing files,
table). With ``S`` seeds, ``S`` such experiments run (seeds 1..S): one after the other for
``per_fold``, all their folds together for ``batched``
(:func:`mefnet.experiment.train.run_experiments`).

The last column compares with STSTNet's own 2019 training script (christy1206/STSTNet,
``main.py``), which takes 52 s a fold on the 2-core reference machine, 58.7 min for 68
folds (a figure measured earlier on that machine, not in this run), times the seeds.

The recipe is the recommended composite recipe, ``experiment=megc2019_flows`` (AM3F-FlowNet's
recipe: synthetic pretraining, batch 32, 29 epochs, residual MSFF, flow augmentation, EMA, test-time
mirror; ``backbone=ststnet`` swaps the model only), on the synthetic stand-in instead of the flow folder; ``--recipe
paper`` gives the earlier composite recipe, a named baseline row of ``conf/reproduce/paper.yaml``
(inner validation, 30 epochs, batch 64; ``conf/recipe/megc2019_inner_val.yaml``). Overrides on the command line apply to every run (e.g.
``trainer.max_epochs=100``). Each row gives the CPU time of the run (all its processes)
next to its wall time, and ends with the load averages (``/proc/loadavg``) at its end:
on a shared machine the wall time also depends on everything else running.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hydra.utils import instantiate

from mefnet.config import absolute_paths, compose
from mefnet.experiment.plan import pretrain_spec
from mefnet.experiment.train import run, run_experiments
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.training.pretrain import pretrained_weights

COMPOSITE = ["dataset=synthetic", "dataset.index.num_subjects=68", "dataset.index.num_clips=442",
             "dataset.index.frame_size=64", "logger=none", "save_checkpoint=false"]
STSTNET_2019_S_PER_FOLD = 52.0  # christy1206/STSTNet main.py on the 2-core reference machine


RECIPE = ["experiment=megc2019_flows"]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and all its worker processes so far: on a
    shared machine the wall time depends on the other jobs, the CPU time much less."""
    import resource

    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += done.ru_utime + done.ru_stime
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def composite_recipe(recipe: str = "paper") -> list[str]:
    """``paper``: the earlier composite recipe, the named baseline row of
    ``conf/reproduce/paper.yaml`` (``conf/recipe/megc2019_inner_val.yaml``, AM3F-FlowNet with
    the logit-adjusted loss); otherwise the overrides given (space-separated)."""
    if recipe != "paper":
        return recipe.split()
    return ["+recipe=megc2019_inner_val", "loss=logit_adjusted"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", nargs="+", default=["am3f", "ststnet"])
    ap.add_argument("--workers", nargs="+", type=int, default=[2])
    ap.add_argument("--engines", nargs="+", default=["per_fold", "batched"],
                    choices=["per_fold", "batched", "batched-loop"],
                    help="batched: vmapped members (vectorize=true); batched-loop: vectorize=false")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 5], help="ensemble sizes (seeds 1..S)")
    ap.add_argument("--recipe", default=" ".join(RECIPE),
                    help="'paper' or overrides (default: experiment=megc2019_flows)")
    ap.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    a = ap.parse_args()
    work = Path(a.out or tempfile.mkdtemp(prefix="mefnet-bench-loso-"))
    recipe = [*composite_recipe(a.recipe), *a.overrides]
    common = [*COMPOSITE, f"paths.output_dir={work / 'out'}", f"paths.data_dir={work / 'data'}", *recipe]

    cfg = absolute_paths(compose([*common, "experiment_name=prefill"]))
    t = time.perf_counter()
    index = instantiate(cfg.dataset.index)
    build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir, n_jobs=2)
    prep_s = time.perf_counter() - t
    print(f"dataset: {len(index)} clips, {len(index.subjects)} subjects; frames + flow cache {prep_s:.0f} s "
          f"(once, not in the figures below)")
    print(f"recipe: {' '.join(recipe)}")
    def swap(backbone: str) -> list[str]:  # the recipe's AM3F-FlowNet-only key left out for other models
        has = "msff_residual" in compose([*common, f"backbone={backbone}"]).backbone
        return [f"backbone={backbone}", *(["~backbone.msff_residual"] if has and backbone != "am3f" else [])]

    if cfg.get("pretrain") is not None:  # the recipe's pretraining: once per network and seed, cached
        for backbone in a.backbones:
            for s in range(1, max(a.seeds) + 1):
                c = absolute_paths(compose([*common, *swap(backbone), f"seed={s}", "experiment_name=prefill"]))
                t = time.perf_counter()
                pretrained_weights(pretrain_spec(c), list(index.class_names))
                print(f"pretraining {backbone}, seed {s}: {time.perf_counter() - t:.0f} s (synthetic clips made on "
                      "first use; once per network and seed, cached: not in the figures below)", flush=True)
    print()
    print("| backbone | engine | seeds | workers | folds | wall | CPU time | per fold (wall) | UF1 (mean of seeds) "
          "| vs 2019 script | load avg after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for backbone in a.backbones:
        for seeds in a.seeds:
            for engine in a.engines:
                for workers in a.workers:
                    name = f"bench-{backbone}-{engine}-{workers}w"
                    how = [f"engine={engine.split('-')[0]}", f"++vectorize={str(engine == 'batched').lower()}"]
                    cfgs = [compose([*common, *swap(backbone), f"n_jobs={workers}", *how,
                                     f"experiment_name={name}-{seeds}s", f"seed={s}"]) for s in range(1, seeds + 1)]
                    t, cpu = time.perf_counter(), cpu_seconds()
                    if engine != "per_fold":
                        tables = run_experiments(cfgs, n_jobs=workers)
                    else:
                        tables = [run(c) for c in cfgs]
                    wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu
                    rows = [next(r for r in rows if r["part"] == "all") for rows in tables]
                    folds = sum(r["folds"] for r in rows)
                    uf1 = sum(r["uf1"] for r in rows) / len(rows)
                    ratio = STSTNET_2019_S_PER_FOLD * folds / wall
                    print(f"| {backbone} | {engine} | {seeds} | {workers} | {folds} | {wall / 60:.1f} min ({wall:.0f} s) "
                          f"| {cpu / 60:.1f} min "
                          f"| {wall / folds:.2f} s | {uf1:.4f} | {ratio:.0f}x | {load_average()} |", flush=True)


if __name__ == "__main__":
    main()
