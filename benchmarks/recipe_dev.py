"""Recipe research on a development flow folder: one training per (fold, seed) records
everything needed to compare recipes, using inner validation for every choice.

For every LOSO fold and seed the model is trained on the *inner* training set (the
fold's training subjects minus a seeded inner-validation group, drawn exactly as
``selection=inner_val`` draws it). After every epoch it stores the logits of the
inner-validation clips and the class probabilities of the test subject's clips, for the
plain weights and for an exponential moving average (EMA) of the weights. From those the
analysis (``--analyse``) derives, without retraining:

* the mean inner-validation UF1 curve over folds and seeds (what recipes and epoch
  budgets are chosen on: training subjects only);
* per-fold inner-validation epoch choice (smoothed best, as ``selection=inner_val``);
* the test-fold pooled UF1 / UAR of every readout, reported next to the validation
  figures but never used to choose.

The training loop mirrors ``MERModule``: Adam, the fold's seeded shuffling, seeded
initialisation, mirror augmentation with the u sign handled for min-max maps. Recipe
knobs are ``key=value`` arguments (see ``DEFAULTS``). ``pretrain_clips=N`` first trains
each seed's model on N clips of the built-in synthetic dataset (flows computed by mefnet,
cached under /tmp/mefnet-research-cache) and starts every fold from those weights; no
subject of the development data takes part in the pretraining.

    python benchmarks/recipe_dev.py --root ../shared/realdata/flows/megc2019_dev \\
        --out /tmp/r0 --seeds 1 2 3 --jobs 2 backbone=am3f lr=1e-3 epochs=30
    python benchmarks/recipe_dev.py --analyse /tmp/r0 /tmp/r1 ...
    python benchmarks/recipe_dev.py --combine /tmp/a /tmp/b /tmp/c   # ensembles of members
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

CACHE = "/tmp/mefnet-research-cache"

DEFAULTS = {
    "backbone": "am3f",
    "loss": "logit_adjusted",
    "tau": 1.0,
    "label_smoothing": 0.0,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "schedule": "none",      # none | cosine
    "warmup": 0,
    "epochs": 30,
    "batch": 64,
    "hflip": 0,
    "translate": 0,          # max shift in pixels (edge-replicated)
    "zoom": 0.0,             # max relative zoom in/out
    "mixup": 0.0,            # alpha of mixup (0: off)
    "erase": 0.0,            # probability of random erasing of a square
    "ema": 0.99,
    "norm": "minmax",        # minmax (as stored) | per_dataset (channel standardisation per source dataset, training clips)
    "widths": "8,16,32",
    "dropout": 0.5,
    "head": "spatial",
    "msff": "multi",         # multi | single | off (AM3F-FlowNet's ablation switch)
    "msff_residual": 0,      # 1: MSFF's fused term added to the last stage (zero-initialised)
    "tta_shift": 0,          # 1: also record EMA readouts averaged over mirror x one-pixel shifts (10 views)
    "attention_init": "sigmoid",  # identity: every attention gate 2*sigmoid of a zero-initialised layer (1 at start)
    "val_fraction": 0.2,
    "pretrain_clips": 0,     # >0: every fold starts from the seed's model trained on this many built-in synthetic clips
    "pretrain_epochs": 10,
}


def parse_overrides(items):
    rec = dict(DEFAULTS)
    for it in items:
        k, _, v = it.partition("=")
        if k not in rec:
            raise SystemExit(f"unknown recipe key {k!r}; known: {', '.join(DEFAULTS)}")
        t = type(DEFAULTS[k])
        rec[k] = t(v) if t is not str else v
    return rec


def load(root: str):
    from hydra.utils import instantiate

    from mefnet.config import compose
    from mefnet.preprocessing.features import Preprocessing, build_features

    cfg = compose(["dataset=flow_folder", f"dataset.index.root={root}", f"paths.cache_dir={CACHE}"])
    index = instantiate(cfg.dataset.index)
    feats = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    return index, feats


def build_backbone(rec, num_classes):
    from mefnet.models.am3f import AM3FFlowNet
    from mefnet.models.ststnet import STSTNet

    if rec["backbone"] == "am3f":
        return AM3FFlowNet(num_classes=num_classes, widths=[int(w) for w in rec["widths"].split(",")],
                           dropout=rec["dropout"], head=rec["head"], msff=rec["msff"],
                           msff_residual=bool(rec["msff_residual"]), attention_init=rec["attention_init"])
    if rec["backbone"] == "ststnet":
        return STSTNet(num_classes=num_classes, dropout=rec["dropout"])
    raise SystemExit(f"backbone {rec['backbone']}")


def augment(x, rec, gen):
    import torch
    import torch.nn.functional as F

    n = len(x)
    if rec["hflip"]:
        m = torch.rand(n, generator=gen) < 0.5
        fl = x.flip(-1)
        fl = torch.cat([1.0 - fl[:, :1], fl[:, 1:]], 1) if rec["norm"] == "minmax" else torch.cat([-fl[:, :1], fl[:, 1:]], 1)
        x = torch.where(m[:, None, None, None], fl, x)
    if rec["translate"] or rec["zoom"]:
        size = x.shape[-1]
        t = rec["translate"] * 2.0 / size
        tx = (torch.rand(n, generator=gen) * 2 - 1) * t
        ty = (torch.rand(n, generator=gen) * 2 - 1) * t
        s = 1 + (torch.rand(n, generator=gen) * 2 - 1) * rec["zoom"]
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = 1 / s
        theta[:, 1, 1] = 1 / s
        theta[:, 0, 2] = tx
        theta[:, 1, 2] = ty
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if rec["erase"]:
        size = x.shape[-1]
        m = torch.rand(n, generator=gen) < rec["erase"]
        side = size // 4
        x = x.clone()
        for i in torch.nonzero(m).flatten().tolist():
            r, c = torch.randint(0, size - side + 1, (2,), generator=gen).tolist()
            x[i, :, r:r + side, c:c + side] = x[i].mean(dim=(1, 2), keepdim=True)
    return x


def uf1_uar(y, p, k=3):
    from mefnet.utils.metrics import f1_from_counts

    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (np.asarray(y), np.asarray(p)), 1)
    tp = np.diag(cm).astype(float)
    sup = cm.sum(1)
    present = sup > 0
    f1 = f1_from_counts(tp, cm.sum(0) - tp, sup - tp)
    rec = tp / np.maximum(sup, 1)
    return float(f1[present].mean()), float(rec[present].mean())


def make_loss(rec, counts):
    """The recipe's training loss for a training set with these class counts."""
    import torch.nn.functional as F

    from mefnet.losses.cross_entropy import CrossEntropyLoss
    from mefnet.losses.logit_adjusted import LogitAdjustedLoss

    if rec["loss"] != "logit_adjusted":
        return CrossEntropyLoss(label_smoothing=rec["label_smoothing"])
    adjusted = LogitAdjustedLoss(class_counts=counts, tau=rec["tau"])

    def loss_fn(logits, y):
        return F.cross_entropy(adjusted.adjusted_logits(logits), y, label_smoothing=rec["label_smoothing"])
    return loss_fn


def run_one(rec, index, feats, fold, seed):
    import copy

    import lightning as L
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate  # noqa: F401

    from mefnet.training.selection import choose_val_subjects

    torch.set_num_threads(1)
    train_idx, test_idx = index.fold_indices(fold)
    val_subj = set(choose_val_subjects(index, fold, rec["val_fraction"], seed))
    val_idx = [i for i in train_idx if index[i].subject_key in val_subj]
    tr_idx = [i for i in train_idx if index[i].subject_key not in val_subj]
    labels = torch.tensor([c.label for c in index])
    x = feats.clone()
    if rec["norm"] == "per_dataset":
        ds = np.array([c.dataset for c in index])
        for d in set(ds):
            members = [i for i in tr_idx if ds[i] == d]
            allm = np.nonzero(ds == d)[0].tolist()
            if not members:
                continue
            mu = x[members].mean(dim=(0, 2, 3), keepdim=True)
            sd = x[members].std(dim=(0, 2, 3), keepdim=True)
            x[allm] = (x[allm] - mu) / sd
    L.seed_everything(seed, verbose=False)
    model = build_backbone(rec, index.num_classes)
    if rec["pretrain_clips"]:
        # the seed's model pretrained on synthetic clips only (no subject of this data set)
        model.load_state_dict(torch.load(pretrained_path(rec, seed), weights_only=True))
    loss_fn = make_loss(rec, index.class_counts(tr_idx))
    if rec["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=rec["lr"], weight_decay=rec["weight_decay"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=rec["lr"], weight_decay=rec["weight_decay"])
    xtr, ytr = x[tr_idx], labels[tr_idx]
    steps_per_epoch = math.ceil(len(tr_idx) / rec["batch"])
    total = steps_per_epoch * rec["epochs"]
    sched = None
    if rec["schedule"] == "cosine":
        w = rec["warmup"] * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, total - w))))
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    agen = torch.Generator().manual_seed(seed + 1000)
    xv, xt = x[val_idx], x[test_idx]
    def mirror(t):
        fl = t.flip(-1)
        u = 1.0 - fl[:, :1] if rec["norm"] == "minmax" else -fl[:, :1]
        return torch.cat([u, fl[:, 1:]], 1)

    xvm, xtm = mirror(xv), mirror(xt)

    def shifted(t, dx, dy):
        # the maps of the face moved by (dx, dy) whole pixels, the border repeated
        # (what augment's translation does at an integer shift)
        h, w = t.shape[-2:]
        p = F.pad(t, (1, 1, 1, 1), mode="replicate")
        return p[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]

    shifts = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    views_v = [s(v) for v in (xv, xvm) for s in [lambda t, d=d: shifted(t, *d) for d in shifts]] if rec["tta_shift"] else []
    views_t = [s(v) for v in (xt, xtm) for s in [lambda t, d=d: shifted(t, *d) for d in shifts]] if rec["tta_shift"] else []
    val_logits, test_probs, ema_val, ema_test, losses = [], [], [], [], []
    tta_val, tta_test = [], []
    tta10_val, tta10_test = [], []
    step = 0
    for _epoch in range(rec["epochs"]):
        model.train()
        perm = torch.randperm(len(tr_idx), generator=gen)
        tot = 0.0
        for b in range(steps_per_epoch):
            ids = perm[b * rec["batch"]:(b + 1) * rec["batch"]]
            xb, yb = xtr[ids], ytr[ids]
            xb = augment(xb, rec, agen)
            if rec["mixup"] > 0:
                lam = float(np.random.default_rng(seed * 100003 + step).beta(rec["mixup"], rec["mixup"]))
                j = torch.randperm(len(xb), generator=agen)
                logits = model(lam * xb + (1 - lam) * xb[j])
                loss = lam * loss_fn(logits, yb) + (1 - lam) * loss_fn(logits, yb[j])
            else:
                loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            step += 1
            tot += float(loss.detach())
            with torch.no_grad():
                d = min(rec["ema"], (1 + step) / (10 + step))
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.mul_(d).add_(pm.detach(), alpha=1 - d)
                for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
                    be.copy_(bm)
        losses.append(tot / steps_per_epoch)
        model.eval()
        ema.eval()
        with torch.no_grad():
            val_logits.append(model(xv).numpy())
            test_probs.append(F.softmax(model(xt), 1).numpy())
            ema_val.append(ema(xv).numpy())
            ema_test.append(F.softmax(ema(xt), 1).numpy())
            # test-time mirror: mean of the probabilities of the maps and of the mirrored maps (EMA weights)
            tta_val.append(np.log((F.softmax(ema(xv), 1) + F.softmax(ema(xvm), 1)).numpy() / 2))
            tta_test.append(((F.softmax(ema(xt), 1) + F.softmax(ema(xtm), 1)) / 2).numpy())
            if rec["tta_shift"]:
                # mirror x shifts by one pixel: 10 views per clip, probabilities averaged
                tta10_val.append(np.log(torch.stack([F.softmax(ema(v), 1) for v in views_v]).mean(0).numpy()))
                tta10_test.append(torch.stack([F.softmax(ema(v), 1) for v in views_t]).mean(0).numpy())
    return {
        "fold": fold, "seed": seed, "val_idx": val_idx, "test_idx": test_idx,
        "val_logits": np.stack(val_logits), "test_probs": np.stack(test_probs),
        "ema_val": np.stack(ema_val), "ema_test": np.stack(ema_test), "loss": losses,
        "tta_val": np.stack(tta_val), "tta_test": np.stack(tta_test),
        **({"tta10_val": np.stack(tta10_val), "tta10_test": np.stack(tta10_test)} if rec["tta_shift"] else {}),
    }


def synthetic_maps(n):
    """Input maps of ``n`` clips of the built-in synthetic dataset (``dataset=synthetic``:
    100 subjects, generator seed 11, TV-L1 flow and strain of the whole 128 px frame, 28x28,
    min-max scaled per map like the flow folders' images), cached as one file."""
    import torch
    from hydra.utils import instantiate

    from mefnet.config import compose
    from mefnet.preprocessing.features import Preprocessing, build_features

    path = Path(CACHE) / f"synthetic_{n}_seed11.pt"
    if not path.is_file():
        cfg = compose(["dataset=synthetic", f"dataset.index.root={CACHE}/synthetic_{n}_seed11",
                       f"dataset.index.num_clips={n}", "dataset.index.num_subjects=100",
                       "dataset.index.seed=11", f"paths.cache_dir={CACHE}", "preprocessing.size=28",
                       "preprocessing.normalize=minmax", "preprocessing.n_jobs=1"])
        index = instantiate(cfg.dataset.index)
        feats = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
        torch.save({"x": feats, "y": torch.tensor([c.label for c in index]),
                    "classes": list(index.class_names)}, path)
    return path


def pretrained_path(rec, seed):
    return Path(CACHE) / f"pretrained_{rec['pretrain_clips']}_e{rec['pretrain_epochs']}_seed{seed}_{recipe_key(rec)}.pt"


def recipe_key(rec):
    import hashlib

    keep = {k: v for k, v in rec.items() if k != "tta_shift"}
    return hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:10]


def pretrain(rec, seed, class_names):
    """Train the seed's model on ``rec['pretrain_clips']`` synthetic clips (same model, loss,
    optimiser, batch and augmentation as the recipe) and cache its weights."""
    import lightning as L
    import torch


    path = pretrained_path(rec, seed)
    if path.is_file():
        return
    data = torch.load(synthetic_maps(rec["pretrain_clips"]), weights_only=False)
    if list(data["classes"]) != list(class_names):
        raise SystemExit(f"synthetic classes {data['classes']} differ from the data's {class_names}")
    torch.set_num_threads(1)
    x, y = data["x"].float(), data["y"].long()
    L.seed_everything(seed, verbose=False)
    model = build_backbone(rec, len(class_names))
    loss_fn = make_loss(rec, torch.bincount(y, minlength=len(class_names)).tolist())
    opt = torch.optim.Adam(model.parameters(), lr=rec["lr"])
    gen = torch.Generator().manual_seed(seed + 7)
    agen = torch.Generator().manual_seed(seed + 8)
    model.train()
    for epoch in range(rec["pretrain_epochs"]):
        perm = torch.randperm(len(x), generator=gen)
        tot = 0.0
        for b in range(0, len(x), rec["batch"]):
            ids = perm[b:b + rec["batch"]]
            logits = model(augment(x[ids], rec, agen))
            loss = loss_fn(logits, y[ids])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(ids)
        print(f"pretrain seed {seed} epoch {epoch + 1}: loss {tot / len(x):.4f}", flush=True)
    torch.save(model.state_dict(), path)


def train(args):
    from joblib import Parallel, delayed

    rec = parse_overrides(args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps({"recipe": rec, "root": args.root, "seeds": args.seeds}, indent=1))
    index, feats = load(args.root)
    if rec["pretrain_clips"]:
        synthetic_maps(rec["pretrain_clips"])
        Parallel(n_jobs=args.jobs)(delayed(pretrain)(rec, s, list(index.class_names)) for s in args.seeds)
    todo = [(f, s) for s in args.seeds for f in index.subjects
            if not (out / f"{f.replace('/', '_')}_{s}.npz").is_file()]
    t0 = time.perf_counter()

    def job(f, s):
        r = run_one(rec, index, feats, f, s)
        np.savez(out / f"{f.replace('/', '_')}_{s}.npz", **{k: np.asarray(v) for k, v in r.items()})
        return f

    for _ in Parallel(n_jobs=args.jobs, return_as="generator")(delayed(job)(f, s) for f, s in todo):
        pass
    print(f"{out}: {len(todo)} runs in {time.perf_counter() - t0:.0f} s", flush=True)


def smooth(v, k):
    h = k // 2
    return np.array([np.mean(v[max(0, i - h): i + h + 1]) for i in range(len(v))])


def analyse(dirs, root, smooth_k=5, min_epoch=3):
    from mefnet.report.metrics import mean_std

    index, _ = load(root)
    y = np.array([c.label for c in index])
    ds = np.array([c.dataset for c in index])
    for d in dirs:
        d = Path(d)
        meta = json.loads((d / "recipe.json").read_text())
        runs = [dict(np.load(p, allow_pickle=True)) for p in sorted(d.glob("*.npz"))]
        seeds = sorted({int(r["seed"]) for r in runs})
        nf = len(index.subjects)
        complete = [s for s in seeds if sum(int(r["seed"]) == s for r in runs) == nf]
        if not complete:
            print(f"{d}: incomplete ({len(runs)} runs)")
            continue
        runs = [r for r in runs if int(r["seed"]) in complete]
        E = runs[0]["val_logits"].shape[0]
        res = {}
        kinds = [("raw", "val_logits", "test_probs"), ("ema", "ema_val", "ema_test")]
        if "tta_val" in runs[0]:
            kinds.append(("ema+tta", "tta_val", "tta_test"))
        if "tta10_val" in runs[0]:
            kinds.append(("ema+tta10", "tta10_val", "tta10_test"))
        for kind, vk, tk in kinds:
            # mean inner-val UF1 curve over folds and seeds (training subjects only)
            curves = np.array([[uf1_uar(y[r["val_idx"]], r[vk][e].argmax(1))[0] for e in range(E)] for r in runs])
            mean_curve = curves.mean(0)
            n_best = int(np.argmax(smooth(mean_curve, 3)[min_epoch - 1:]) + min_epoch)
            per_seed = {}
            for s in complete:
                rs = [r for r in runs if int(r["seed"]) == s]
                probs_fixed = np.zeros((len(index), 3))
                probs_sel = np.zeros((len(index), 3))
                for r, c in zip(rs, curves[[i for i, rr in enumerate(runs) if int(rr["seed"]) == s]], strict=True):
                    sc = smooth(c, smooth_k)
                    e = int(np.argmax(sc[min_epoch - 1:]) + min_epoch - 1)
                    probs_fixed[r["test_idx"]] = r[tk][n_best - 1]
                    probs_sel[r["test_idx"]] = r[tk][e]
                per_seed[s] = (probs_fixed, probs_sel)
            out = {"val_curve_max": float(smooth(mean_curve, 3)[n_best - 1]), "n_best": n_best,
                   "val_last": float(mean_curve[-1])}
            for mode, j in (("fixedN", 0), ("innersel", 1)):
                scores = [uf1_uar(y, per_seed[s][j].argmax(1)) for s in complete]
                ens = np.mean([per_seed[s][j] for s in complete], 0)
                parts = {p: uf1_uar(y[ds == p], ens[ds == p].argmax(1))[0] for p in sorted(set(ds))}
                parts_seed = {p: np.mean([uf1_uar(y[ds == p], per_seed[s][j][ds == p].argmax(1))[0]
                                          for s in complete]) for p in sorted(set(ds))}
                uf1_mean, uf1_std = mean_std([a for a, _ in scores])
                out[mode] = {"uf1_mean": uf1_mean, "uf1_std": uf1_std or 0.0,
                             "uar_mean": float(np.mean([b for _, b in scores])),
                             "ens_uf1": uf1_uar(y, ens.argmax(1))[0], "ens_uar": uf1_uar(y, ens.argmax(1))[1],
                             "parts_mean": parts_seed, "parts_ens": parts}
            # test UF1 at the last epoch (fixed budget = all epochs)
            last = [uf1_uar(y, np.concatenate([r[tk][-1] for r in runs if int(r["seed"]) == s])[
                np.argsort(np.concatenate([r["test_idx"] for r in runs if int(r["seed"]) == s]))].argmax(1))[0]
                for s in complete]
            out["last_epoch_test_uf1"] = float(np.mean(last))
            res[kind] = out
        rec = meta["recipe"]
        diff = {k: v for k, v in rec.items() if DEFAULTS.get(k) != v}
        print(f"\n== {d.name}  seeds={complete}  {diff}")
        for kind, o in res.items():
            print(f"  [{kind}] val: mean-curve best {o['val_curve_max']:.4f} at epoch {o['n_best']} "
                  f"(last {o['val_last']:.4f}) | test: fixedN {o['fixedN']['uf1_mean']:.4f}±{o['fixedN']['uf1_std']:.4f} "
                  f"ens {o['fixedN']['ens_uf1']:.4f}; innersel {o['innersel']['uf1_mean']:.4f}±{o['innersel']['uf1_std']:.4f} "
                  f"ens {o['innersel']['ens_uf1']:.4f}; last-epoch {o['last_epoch_test_uf1']:.4f}")
            print(f"      parts fixedN mean {fmt(o['fixedN']['parts_mean'])} ens {fmt(o['fixedN']['parts_ens'])}")
        (d / "analysis.json").write_text(json.dumps(res, indent=1, default=float))


def combine(dirs, root, readout="ema+tta"):
    """Ensembles of members trained in different research runs (``--combine A B C``).

    Each member keeps its own epoch budget (the best epoch of its mean validation curve,
    3-point moving average, as :func:`analyse` chooses it). For every non-empty subset of
    the members and every seed, the ensemble is the mean of the members' class
    probabilities at their budgets; its validation score is the UF1 of each (fold, seed)'s
    validation clips averaged over folds and seeds (the members of one seed share their
    validation subjects, drawn from the fold and the seed), its test score the pooled UF1
    of the test subjects. Test figures are printed beside the validation ones, never used
    to choose."""
    import itertools

    from mefnet.report.metrics import mean_std

    keys = {"raw": ("val_logits", "test_probs"), "ema": ("ema_val", "ema_test"),
            "ema+tta": ("tta_val", "tta_test")}[readout]
    index, _ = load(root)
    y = np.array([c.label for c in index])
    nf = len(index.subjects)
    members = {}
    for d in map(Path, dirs):
        runs = [dict(np.load(p, allow_pickle=True)) for p in sorted(d.glob("*.npz"))]
        seeds = sorted({int(r["seed"]) for r in runs})
        complete = [s for s in seeds if sum(int(r["seed"]) == s for r in runs) == nf]
        runs = {(str(r["fold"]), int(r["seed"])): r for r in runs if int(r["seed"]) in complete}
        vk = keys[0]
        E = next(iter(runs.values()))[vk].shape[0]
        curve = np.mean([[uf1_uar(y[r["val_idx"]], r[vk][e].argmax(1))[0] for e in range(E)]
                         for r in runs.values()], 0)
        n_best = int(np.argmax(smooth(curve, 3)[2:]) + 3)
        members[d.name] = (runs, complete, n_best)
        print(f"{d.name}: seeds {complete}, budget {n_best} epochs "
              f"(mean validation UF1 {smooth(curve, 3)[n_best - 1]:.4f})")
    seeds = sorted(set.intersection(*[set(m[1]) for m in members.values()]))
    folds = sorted({f for f, _ in next(iter(members.values()))[0]})

    def probs(name, fold, seed, split):
        runs, _, n_best = members[name]
        r = runs[(fold, seed)]
        v = r[keys[0] if split == "val" else keys[1]][n_best - 1]
        if split == "val":  # stored as logits or log-probabilities: turn into probabilities
            v = np.exp(v - v.max(1, keepdims=True))
            v = v / v.sum(1, keepdims=True)
        return v, r

    results = []
    names = list(members)
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            val_seed, test_seed = [], []
            for s in seeds:
                vals, pt = [], np.zeros((len(index), 3))
                for f in folds:
                    ps = [probs(n, f, s, "val") for n in combo]
                    r = ps[0][1]
                    vals.append(uf1_uar(y[r["val_idx"]], np.mean([p for p, _ in ps], 0).argmax(1))[0])
                    pt[r["test_idx"]] = np.mean([probs(n, f, s, "test")[0] for n in combo], 0)
                val_seed.append(float(np.mean(vals)))
                test_seed.append(uf1_uar(y, pt.argmax(1))[0])
            test_mean, test_std = mean_std(test_seed)
            results.append({"members": combo, "val_per_seed": val_seed, "test_per_seed": test_seed,
                            "val": float(np.mean(val_seed)), "test": test_mean, "test_std": test_std or 0.0})
    print(f"\nreadout {readout}, seeds {seeds}")
    print("| members | validation UF1 (per seed) | test UF1 mean ± std (per seed) |")
    print("|---|---|---|")
    for r in sorted(results, key=lambda r: -r["val"]):
        print(f"| {' + '.join(r['members'])} | {r['val']:.4f} ({', '.join(f'{v:.4f}' for v in r['val_per_seed'])}) "
              f"| {r['test']:.4f} ± {r['test_std']:.4f} ({', '.join(f'{v:.4f}' for v in r['test_per_seed'])}) |")
    return results


def fmt(p):
    return " ".join(f"{k}={v:.3f}" for k, v in p.items())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--out")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--analyse", nargs="+")
    ap.add_argument("--combine", nargs="+", help="research runs whose members are ensembled (see combine())")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    if args.combine:
        combine(args.combine, args.root)
    elif args.analyse:
        analyse(args.analyse, args.root)
    else:
        train(args)


if __name__ == "__main__":
    sys.exit(main())
