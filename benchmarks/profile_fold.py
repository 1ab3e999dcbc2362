"""Where a fold's time goes, per engine: ``cProfile`` over whole folds, sorted into rows.

Run: ``python benchmarks/profile_fold.py [--backbone am3f] [--folds 3] [--batched-folds 68]
[--engines per_fold batched] [--recipe experiment=megc2019_flows] [--out DIR] [overrides ...]``.
The first ``--folds`` subjects of the composite-sized synthetic set of ``bench_loso.py``
(68 subjects, 442 clips, 28x28, its recipe) are trained and predicted with
``engine=per_fold`` (``run_fold`` in turn), the first ``--batched-folds`` with
``engine=batched`` (one ``run_batched``, all of them members of one fit); each
function's cumulative time goes to one row (augmentation, forward, backward, optimizer
step, data loading, inner validation, the rest of Lightning's fit, prediction, writing
files, set-up). Process start is ``python -c "import mefnet.experiment.train"`` timed on
its own. Prints markdown tables with the load averages; asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_loso import COMPOSITE, RECIPE, composite_recipe, load_average
from hydra.utils import instantiate

from mefnet.config import absolute_paths, compose
from mefnet.experiment.batched import run_batched
from mefnet.experiment.fold import run_fold
from mefnet.experiment.plan import pretrain_spec
from mefnet.experiment.train import _prepare_experiment
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.training.pretrain import pretrained_weights


def _cum(stats: pstats.Stats, pred) -> float:
    return sum(v[3] for k, v in stats.stats.items() if pred(k))


def _fn(file: str, name: str):
    return lambda k: k[0].endswith(file) and k[2] == name


def breakdown(pr: cProfile.Profile, wall: float) -> list[tuple[str, float]]:
    st = pstats.Stats(pr)
    aug = _cum(st, _fn("mefnet/training/augment.py", "forward"))
    # per_fold: MERModule.train_loss; batched: the vmapped step (masks, stacking, forward, losses)
    fwd = (_cum(st, _fn("mefnet/training/module.py", "train_loss"))
           + _cum(st, _fn("mefnet/training/batched.py", "training_step")))
    bwd = _cum(st, lambda k: k[2] == "<method 'run_backward' of 'torch._C._EngineBase' objects>")
    closure = _cum(st, _fn("loops/optimization/automatic.py", "closure"))
    opt = _cum(st, _fn("torch/optim/adam.py", "step")) - closure
    data = _cum(st, _fn("loops/fetchers.py", "__next__"))
    val = _cum(st, _fn("loops/evaluation_loop.py", "run"))
    write = _cum(st, _fn("mefnet/experiment/engine.py", "write_fold"))
    fit = _cum(st, _fn("lightning/pytorch/trainer/trainer.py", "fit"))
    pred = _cum(st, _fn("lightning/pytorch/trainer/trainer.py", "predict"))
    return [("augmentation (drawn and applied per member)", aug),
            ("forward (+ loss; batched: dropout masks, stacking, vmapped forward)", fwd - aug),
            ("backward", bwd), ("optimizer step", opt),
            ("data loading", data), ("inner validation", val),
            ("Lightning loop and hooks (rest of the fit)", fit - fwd - bwd - opt - data - val),
            ("predicting the test subject", pred), ("writing files", write),
            ("set-up outside the fit", wall - fit - pred - write)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="am3f")
    ap.add_argument("--folds", type=int, default=3, help="folds profiled with engine=per_fold")
    ap.add_argument("--batched-folds", type=int, default=None, help="folds profiled with engine=batched "
                    "(default: --folds)")
    ap.add_argument("--engines", nargs="+", default=["per_fold", "batched-vmap", "batched-loop"],
                    choices=["per_fold", "batched-vmap", "batched-loop"],
                    help="batched-vmap / batched-loop: engine=batched with vectorize=true / false")
    ap.add_argument("--no-cprofile", action="store_true",
                    help="time only (cProfile's per-call cost inflates Python-heavy paths)")
    ap.add_argument("--recipe", default=" ".join(RECIPE), help="'paper' or overrides")
    ap.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--dump", default=None, help="also write each engine's cProfile statistics to "
                    "DUMP.<engine>.prof (pstats / snakeviz format)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides")
    a = ap.parse_args()
    work = Path(a.out or tempfile.mkdtemp(prefix="mefnet-profile-"))
    common = [*COMPOSITE, f"paths.output_dir={work / 'out'}", f"paths.data_dir={work / 'data'}",
              *composite_recipe(a.recipe), f"backbone={a.backbone}", *a.overrides]
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mefnet.experiment.train"], check=True)
    print(f"process start + imports: {time.perf_counter() - t:.1f} s")
    for engine in a.engines:
        vec = [f"++vectorize={str(engine == 'batched-vmap').lower()}"] if engine != "per_fold" else []
        cfg = absolute_paths(compose([*common, *vec, f"experiment_name=profile-{a.backbone}-{engine}"]))
        index = instantiate(cfg.dataset.index)
        feats = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir,
                               n_jobs=2)
        if cfg.get("pretrain") is not None:  # cached before profiling (made once per network and seed)
            pretrained_weights(pretrain_spec(cfg), list(index.class_names))
        shutil.rmtree(cfg.experiment_dir, ignore_errors=True)
        _prepare_experiment(cfg, index)
        folds = index.subjects[:a.folds if engine == "per_fold" else (a.batched_folds or a.folds)]
        pr = cProfile.Profile()
        t, cpu = time.perf_counter(), time.process_time()
        if not a.no_cprofile:
            pr.enable()
        if engine == "per_fold":
            for s in folds:
                run_fold(cfg, index, feats, s)
        else:
            run_batched([(cfg, s) for s in folds], index, feats)
        pr.disable()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"\n{engine}: {len(folds)} folds of {a.backbone}, wall {wall:.1f} s, CPU {cpu:.1f} s "
              f"({cpu / len(folds):.2f} CPU s a fold){' under cProfile' if not a.no_cprofile else ''}; "
              f"load average {load_average()}\n", flush=True)
        if a.no_cprofile:
            continue
        if a.dump:
            pr.dump_stats(f"{a.dump}.{engine}.prof")
        print("| row | time | share |\n|---|---:|---:|")
        for name, v in breakdown(pr, wall):
            print(f"| {name} | {v:.1f} s | {100 * v / wall:.0f}% |")


if __name__ == "__main__":
    main()
