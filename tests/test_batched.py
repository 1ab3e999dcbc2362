"""engine=batched: the same folds, the same predictions, the same leak guard as per_fold.

The batched engine vectorises the members' forward and backward passes (``vmap``); these
tests compare it with the per-fold engine on recipes that exercise everything a member
keeps of its own: dropout and augmentation streams, batch-norm statistics, last batches
of different sizes (several vmapped groups per step), class priors in the loss, EMA
weight averaging, test-time mirror, inner validation with and without refit."""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from mefnet.config import CONFIG_DIR, absolute_paths, compose, instantiate_option
from mefnet.experiment.batched import run_batched
from mefnet.experiment.train import run
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.training.batched import _Template
from tests.helpers import TINY_PRETRAIN, assert_same_selection, tiny_overrides

# Batches of 8 over 5 to 16 training clips per fold (inner training sets included): the
# first step of an epoch has members with batches of one size (one vmapped group), the
# last several sizes (several groups). No batch of a single clip, whose batch norm would
# amplify the vmapped arithmetic's 1e-7 differences.
BATCH = "data.batch_size=8"
# The vmapped path (the default; vectorize=false runs the members one after another).
VMAP = "++vectorize=true"
INNER_VAL = [BATCH, "selection=inner_val", "inner_val.every_n_epochs=1", "inner_val.min_epochs=1", "inner_val.smooth=1",
             "inner_val.val_fraction=0.3", "trainer.max_epochs=4"]
CASES = {
    "fixed": [BATCH, "augment=flow"],
    "fixed-looped": [BATCH, "augment=flow", "++vectorize=false"],
    # experiment=megc2019_flows's options (AM3F-FlowNet, logit-adjusted loss, flow
    # augmentation, per-member EMA, test-time mirror); members end their epochs with
    # different batch sizes and step counts.
    # Every member starts from its seed's pretrained weights (the recipe's pretrain=synthetic,
    # on a few tiny clips here).
    "megc2019-flows": ["experiment=megc2019_flows", "dataset=synthetic", BATCH,
                       "trainer.max_epochs=3", *TINY_PRETRAIN],
    # experiment=ststnet_paper (0..255 maps, svu order, branch dropout, class order, no shuffle)
    "ststnet-paper": ["experiment=ststnet_paper", "dataset=synthetic", BATCH, "trainer.max_epochs=3"],
    # Batches of 256: one step per epoch. With several steps, a validation score can tie
    # differently between the engines and another epoch be chosen (then refit differs).
    "inner-refit": [*INNER_VAL, "inner_val.refit=true", "data.batch_size=256"],
    "inner-keep": [*INNER_VAL, "inner_val.refit=false", "backbone=am3f"],
    # Each member's gradient clipped on its own, as its own fit clips it (a small bound, so
    # that the clip acts at every step), by norm and by value.
    "clip-norm": [BATCH, "+trainer.gradient_clip_val=0.05"],
    "clip-value": [BATCH, "+trainer.gradient_clip_val=0.001", "+trainer.gradient_clip_algorithm=value"],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("batched")


@pytest.fixture()
def vmapped(monkeypatch) -> list[int]:
    """The number of members in each vmapped forward call the batched engine makes."""
    calls: list[int] = []
    original = _Template.__call__

    def counted(self, params, buffers, x, masks):
        calls.append(len(x))
        return original(self, params, buffers, x, masks)

    monkeypatch.setattr(_Template, "__call__", counted)
    return calls


@pytest.fixture()
def flat_steps(monkeypatch) -> list[int]:
    """The size of each flat gradient the batched engine gathered (one per stepping member
    and step): the optimizer stepped one flat tensor per member."""
    from mefnet.training.batched import _MemberStorage

    sizes: list[int] = []
    original = _MemberStorage.gather

    def counted(self, stepped):
        original(self, stepped)
        if stepped:
            sizes.append(self.flat.grad.numel())

    monkeypatch.setattr(_MemberStorage, "gather", counted)
    return sizes


def _probs(exp: Path) -> dict[tuple[str, str], list[float]]:
    out = {}
    for p in sorted(exp.glob("folds/*/*/predictions.csv")):
        for r in csv.DictReader(p.open(newline="")):
            out[(r["subject"], r["clip"])] = [float(v) for k, v in r.items() if k.startswith("prob_")]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_equals_per_fold(workdir, vmapped, flat_steps, case):
    """Every clip's class probabilities within 1e-4 of the per-fold engine's, the same
    validation curve and chosen epoch per fold, the same table; a rerun is byte-identical."""
    exps = {}
    for engine in ("per_fold", "batched"):
        cfg = compose(tiny_overrides(workdir, f"{case}-{engine}", f"engine={engine}", VMAP, *CASES[case]))
        rows = run(cfg)
        exps[engine] = (Path(cfg.experiment_dir), rows)
        if engine == "per_fold":
            assert not vmapped and not flat_steps
    # The optimizer stepped each member's parameters as one flat tensor.
    assert flat_steps and min(flat_steps) > 100
    # The folds' training steps ran vectorised (groups of several members), or looped.
    assert (not vmapped) if "++vectorize=false" in CASES[case] else (vmapped and max(vmapped) >= (1 if "data.batch_size=256" in CASES[case] else 3))
    (pf, pf_rows), (bt, bt_rows) = exps["per_fold"], exps["batched"]
    a, b = _probs(pf), _probs(bt)
    assert a.keys() == b.keys() and len(a) == 18
    assert max(abs(x - y) for k in a for x, y in zip(a[k], b[k], strict=True)) <= 1e-4
    assert [r["uf1"] for r in pf_rows] == pytest.approx([r["uf1"] for r in bt_rows], abs=0.01)
    assert_same_selection(pf, bt)
    # Determinism: the same config and seed again, byte-identical predictions.
    again = compose(tiny_overrides(workdir, f"{case}-batched-again", "engine=batched", VMAP, *CASES[case]))
    run(again)
    for p in sorted(bt.glob("folds/*/*/predictions.csv")):
        assert p.read_text() == (Path(again.experiment_dir) / p.relative_to(bt)).read_text()


def test_a_seed_ensemble_in_one_fit_equals_its_seeds_run_apart(workdir):
    """Folds x seeds as members of one fit: each seed's folds as in a run of that seed
    alone (and with n_jobs=2, two batched processes give the same predictions)."""
    cfgs = [absolute_paths(compose(tiny_overrides(workdir, "ens", "engine=batched", VMAP, f"seed={s}"))) for s in (1, 2)]
    index = instantiate(cfgs[0].dataset.index)
    features = build_features(index, Preprocessing.from_config(cfgs[0].preprocessing), cfgs[0].preprocessing.cache_dir)
    for cfg in cfgs:  # experiment.json, as run() writes it
        from mefnet.experiment.train import _prepare_experiment

        _prepare_experiment(cfg, index)
    records = run_batched([(cfg, s) for cfg in cfgs for s in index.subjects], index, features)
    assert len(records) == 8 and {r["seed"] for r in records} == {1, 2}
    for seed, cfg in zip((1, 2), cfgs, strict=True):
        alone = compose(tiny_overrides(workdir, f"ens-alone-{seed}", "engine=per_fold", f"seed={seed}",
                                           "n_jobs=2"))
        run(alone)
        a, b = _probs(Path(alone.experiment_dir)), _probs(Path(cfg.experiment_dir))
        assert a.keys() == b.keys()
        assert max(abs(x - y) for k in a for x, y in zip(a[k], b[k], strict=True)) <= 1e-4
    par = compose(tiny_overrides(workdir, "ens-parallel", "engine=batched", VMAP, "seed=1", "n_jobs=2"))
    run(par)
    # Other groups of members (2 per process instead of 8): vmapped convolutions over other
    # group counts round differently, so within 1e-4, not byte for byte (a rerun of the
    # same config is byte-identical: test_batched_equals_per_fold).
    a, b = _probs(Path(cfgs[0].experiment_dir)), _probs(Path(par.experiment_dir))
    assert a.keys() == b.keys() and len(a) == 18
    assert max(abs(x - y) for k in a for x, y in zip(a[k], b[k], strict=True)) <= 1e-4


@pytest.mark.parametrize("selection", ["fixed_epochs", "inner_val"])
def test_batched_test_subject_labels_cannot_influence_its_predictions(workdir, selection):
    """Leak guard for the batched engine: every clip of one test subject gets a wrong
    label. The other members train on that subject (it is in their training folds), in the
    same fit, with the same optimizer; the test subject's own predictions must not move."""
    extra = INNER_VAL if selection == "inner_val" else [BATCH]
    cfg = absolute_paths(compose(tiny_overrides(workdir, f"leak-{selection}", "engine=batched", VMAP, *extra)))
    index = instantiate(cfg.dataset.index)
    features = build_features(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    test_subject = index.subjects[1]
    honest = run_batched([(cfg, s) for s in index.subjects], index, features)
    wrong = index.with_clips([replace(c, label=(c.label + 1) % 3, label_name=index.class_names[(c.label + 1) % 3])
                              if c.subject_key == test_subject else c for c in index])
    cfg2 = absolute_paths(compose(tiny_overrides(workdir, f"leak-wrong-{selection}", "engine=batched", VMAP,
                                                  *extra)))
    tampered = run_batched([(cfg2, s) for s in wrong.subjects], wrong, features)

    def preds(c, rec):
        rows = list(csv.DictReader((Path(c.experiment_dir) / "folds" / rec["fold"] / "predictions.csv").open()))
        return [(r["clip"], r["pred"], *[r[k] for k in r if k.startswith("prob_")]) for r in rows]

    h = next(r for r in honest if r["fold"] == test_subject)
    t = next(r for r in tampered if r["fold"] == test_subject)
    assert preds(cfg, h) == preds(cfg2, t) and h["n_test"] > 0
    if selection == "inner_val":
        assert test_subject not in h["selection"]["val_subjects"]
        assert h["selection"]["curve"] == t["selection"]["curve"]
    # The other folds did train on the changed labels (the guard is not vacuous).
    others = [(preds(cfg, a), preds(cfg2, b)) for a, b in zip(honest, tampered, strict=True) if a["fold"] != test_subject]
    assert any(x != y for x, y in others)


BACKBONES = sorted(p.stem for p in (Path(CONFIG_DIR) / "backbone").glob("*.yaml"))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_runs_vectorised_and_equals_per_fold(workdir, vmapped, backbone):
    """Every registered backbone, unchanged, through the vmapped engine: the same
    probabilities as its per-fold fits within 1e-4."""
    exps = []
    for engine in ("per_fold", "batched"):
        cfg = compose(tiny_overrides(workdir, f"registry-{backbone}-{engine}", f"engine={engine}", VMAP,
                                     f"backbone={backbone}", "trainer.max_epochs=2", BATCH))
        run(cfg)
        exps.append(_probs(Path(cfg.experiment_dir)))
    assert vmapped and max(vmapped) == 4  # the first step of each epoch: every fold, batches of 8
    a, b = exps
    assert a.keys() == b.keys() and len(a) == 18
    assert max(abs(x - y) for k in a for x, y in zip(a[k], b[k], strict=True)) <= 1e-4


def test_engine_auto_is_batched_where_it_runs_and_per_fold_elsewhere(tmp_path, caplog):
    """``engine=auto`` (the default): batched wherever it runs (emotion classes or AUs,
    every protocol: tests/test_batched_tasks.py); per_fold, said in the log, for what the
    batched engine does not run; explicit values kept."""
    from mefnet.experiment.train import resolve_engine

    assert compose(tiny_overrides(tmp_path, "e")).engine == "auto"
    assert resolve_engine(compose(tiny_overrides(tmp_path, "e"))) == "batched"
    assert resolve_engine(compose(tiny_overrides(tmp_path, "e", "backbone=am3f", "selection=inner_val"))) == "batched"
    assert resolve_engine(compose(tiny_overrides(tmp_path, "e", "engine=per_fold"))) == "per_fold"
    with caplog.at_level("INFO", logger="mefnet"):
        assert resolve_engine(compose(tiny_overrides(tmp_path, "e", "task=au"))) == "batched"
        assert resolve_engine(compose(tiny_overrides(tmp_path, "e", "protocol=holdout"))) == "batched"
        assert resolve_engine(compose(tiny_overrides(tmp_path, "e", "+trainer.gradient_clip_val=1.0"))) == "batched"
        assert resolve_engine(compose(tiny_overrides(tmp_path, "e", "optimizer._target_=torch.optim.LBFGS"))) == \
            "per_fold"
    assert "engine=auto: per_fold, one Lightning fit per fold (engine=batched: optimizer 'torch.optim.LBFGS'" \
        in caplog.text
    with pytest.raises(ValueError, match="engine: 'fast' is not one of auto, batched, per_fold"):
        resolve_engine(compose(tiny_overrides(tmp_path, "e", "engine=fast")))


def test_vectorize_key():
    """``vectorize``: auto (absent) lets the backbone's class choose; true / false force it;
    a wrong value is named."""
    from omegaconf import OmegaConf

    from mefnet.experiment.batched import vectorized

    assert vectorized(OmegaConf.create({})) and vectorized(OmegaConf.create({"vectorize": True}))
    assert not vectorized(OmegaConf.create({"vectorize": "false"}))
    with pytest.raises(ValueError, match="vectorize: 'maybe'"):
        vectorized(OmegaConf.create({"vectorize": "maybe"}))
    # auto (the default): the backbone's class chooses; STSTNet loops, the others vmap.
    for target, vmapped in (("mefnet.models.ststnet.STSTNet", False), ("mefnet.models.am3f.AM3FFlowNet", True)):
        for cfg in ({"backbone": {"_target_": target}}, {"vectorize": "auto", "backbone": {"_target_": target}}):
            assert vectorized(OmegaConf.create(cfg)) is vmapped
    assert not vectorized(OmegaConf.create({"vectorize": False, "backbone": {"_target_": "mefnet.models.am3f.AM3FFlowNet"}}))


def test_every_backbone_class_has_a_config():
    """The backbone configs above cover every class a model file may rebuild."""
    from mefnet.models import MODEL_FILE_BACKBONES

    targets = {compose([f"backbone={b}"]).backbone._target_.rsplit(".", 1)[1] for b in BACKBONES}
    assert {cls.__name__ for cls in MODEL_FILE_BACKBONES} <= targets


def test_one_fit_uses_the_multi_tensor_optimizer_unless_told_otherwise():
    """A batched fit's optimizer holds every member's tensors: foreach=True unless the
    config says otherwise; it gives bit-identical steps, skipping tensors without a
    gradient as the loop does."""
    import functools

    from mefnet.training.module import _foreach_default

    assert _foreach_default(functools.partial(torch.optim.Adam, lr=1e-3)) == {"foreach": True}
    assert _foreach_default(functools.partial(torch.optim.SGD, lr=1e-3, foreach=False)) == {}
    assert _foreach_default(functools.partial(torch.optim.LBFGS, lr=1)) == {}
    torch.manual_seed(0)
    for cls, kw in [(torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 0.01}),
                    (torch.optim.SGD, {"momentum": 0.9})]:
        a = [torch.randn(5, 3, requires_grad=True) for _ in range(4)]
        b = [t.detach().clone().requires_grad_() for t in a]
        opt_a = cls(a, lr=1e-2, **kw)
        opt_b = cls(b, lr=1e-2, **kw, **_foreach_default(functools.partial(cls)))
        for step in range(12):
            for i, (ta, tb) in enumerate(zip(a, b, strict=True)):
                if (step + i) % 3 == 0:  # a member without a batch: no gradient, not touched
                    ta.grad = tb.grad = None
                else:
                    g = torch.randn(5, 3)
                    ta.grad, tb.grad = g.clone(), g.clone()
            opt_a.step()
            opt_b.step()
        assert all(torch.equal(ta, tb) for ta, tb in zip(a, b, strict=True)), cls.__name__


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam",
                                  "Adadelta"])
def test_one_flat_tensor_per_member_steps_bit_for_bit_as_its_tensors(name):
    """The optimizer holds one flat tensor per member (its parameters views of it): every
    optimizer the engine accepts gives the same parameters, bit for bit, as over each
    member's own tensors, with members that skip steps (no batch: no gradient)."""
    from mefnet.experiment.batched import _PER_PARAMETER
    from mefnet.models.am3f import AM3FFlowNet
    from mefnet.training.batched import _MemberStorage

    assert name in _PER_PARAMETER
    cls = getattr(torch.optim, name)
    kw = {"weight_decay": 0.01} if name in ("AdamW", "SGD") else {}
    kw |= {"momentum": 0.9} if name == "SGD" else {}
    torch.manual_seed(0)
    ref = [AM3FFlowNet(widths=(4, 8)) for _ in range(3)]
    members = [copy.deepcopy(m) for m in ref]
    storages = [_MemberStorage(m) for m in members]
    flat_ptrs = {s.flat.untyped_storage().data_ptr() for s in storages}
    assert all(p.untyped_storage().data_ptr() in flat_ptrs for m in members for p in m.parameters())
    opt_ref = cls([p for m in ref for p in m.parameters()], lr=1e-2, foreach=True, **kw)
    opt = cls([s.flat for s in storages], lr=1e-2, foreach=True, **kw)
    for step in range(25):
        for k, (r, m, s) in enumerate(zip(ref, members, storages, strict=True)):
            stepped = (step + k) % 4 != 0
            for p, q in zip(r.parameters(), m.parameters(), strict=True):
                g = torch.randn_like(p) * 10.0 ** float(torch.randint(-6, 2, ()))
                p.grad, q.grad = (g, g.clone()) if stepped else (None, None)
            s.gather(stepped)
        opt_ref.step()
        opt.step()
        for s in storages:
            s.clear_grads()
    for r, m, s in zip(ref, members, storages, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(r.parameters(), m.parameters(), strict=True))
        assert torch.equal(s.flat, torch.cat([p.reshape(-1) for p in r.parameters()]))
        s.release()  # every tensor its own storage again, values kept
        assert len({p.untyped_storage().data_ptr() for p in m.parameters()}) == len(s.params)
        assert all(torch.equal(p, q) for p, q in zip(r.parameters(), m.parameters(), strict=True))


def test_a_member_parameter_without_gradient_stops_the_fit_naming_it():
    """The flat step would move a parameter the member's loss never reached (with weight
    decay, say), where the optimizer over its own tensors leaves it alone: refused, named."""
    from mefnet.training.batched import _MemberStorage

    storage = _MemberStorage(nn.Linear(3, 2), "seed_1/sub01")
    storage.params[0].grad = torch.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"member seed_1/sub01: parameters bias got no gradient"):
        storage.gather(True)
    storage.gather(False)  # a member that did not step: nothing to gather, no gradient
    assert storage.flat.grad is None


def _fold_logs(exp: Path, name: str) -> dict[str, list[dict]]:
    return {p.parent.parent.name: list(csv.DictReader(p.open(newline="")))
            for p in sorted(exp.glob(f"folds/*/*/{name}/metrics.csv"))}


@pytest.mark.parametrize("extra", [[], [*INNER_VAL, "inner_val.refit=true", "data.batch_size=256"]], ids=["fixed", "inner-refit"])
def test_batched_groups_in_two_processes_write_each_folds_log_as_per_fold(workdir, extra):
    """With the CSV logger and n_jobs=2 (two groups side by side, each its own log folder,
    so neither rewrites the other's file), every fold gets its own logs/metrics.csv (and
    inner/metrics.csv before a refit) with per_fold's columns and epochs and its own
    training losses and validation scores. (Batches of 256 under inner_val, as in
    test_batched_equals_per_fold: with several steps an epoch's rounding grows apart.)"""
    tag = "-".join(["logs", *(["refit"] if extra else [])])
    exps = {}
    for engine in ("per_fold", "batched"):
        cfg = compose(tiny_overrides(workdir, f"{tag}-{engine}", f"engine={engine}", "logger=csv", "n_jobs=2", *extra))
        run(cfg)
        exps[engine] = Path(cfg.experiment_dir)
    assert len(list(exps["batched"].glob("batched/*"))) == 2  # one log folder per group
    for name in (["inner", "logs"] if extra else ["logs"]):
        pf, bt = _fold_logs(exps["per_fold"], name), _fold_logs(exps["batched"], name)
        assert pf.keys() == bt.keys() and len(pf) == 4
        for fold in pf:
            # per_fold's columns, unsuffixed: the training loss, UF1 and UAR, validation
            cols = set(pf[fold][0])
            assert {"train/loss", "train/uf1", "train/uar"} <= cols and cols == set(bt[fold][0]), (fold, name)
            for key, tol in (("train/loss", 1e-3), ("train/uf1", 1e-6), ("train/uar", 1e-6)):
                pf_v = [(r["epoch"], float(r[key])) for r in pf[fold] if r.get(key)]
                bt_v = [(r["epoch"], float(r[key])) for r in bt[fold] if r.get(key)]
                assert [e for e, _ in pf_v] == [e for e, _ in bt_v] and pf_v, (fold, name, key)
                assert [v for _, v in pf_v] == pytest.approx([v for _, v in bt_v], abs=tol), (fold, name, key)
    # The folds' losses differ from each other: each log holds its own member's column.
    assert len({tuple(r["train/loss"] for r in rows if r.get("train/loss"))
                for rows in _fold_logs(exps["batched"], "logs").values()}) == 4
    # Each fold's running.json (mefnet-progress) holds its last epoch's loss, not the one before.
    for exp in exps.values():
        for fold, rows in _fold_logs(exp, "logs").items():
            state = json.loads(next(exp.glob(f"folds/*/{fold}/running.json")).read_text())
            last = [float(r["train/loss"]) for r in rows if r.get("train/loss")][-1]
            assert state["loss"] == pytest.approx(last, abs=1e-6), (exp.name, fold)


def test_the_group_heartbeat_shows_each_epochs_own_loss(tmp_path, monkeypatch, caplog):
    """The batched group's line at epoch 1 has that epoch's mean loss (Lightning calls the
    callbacks' epoch-end hooks before the module's: a loss logged there came one epoch late,
    as ``loss nan`` at epoch 1)."""
    monkeypatch.setenv("MEFNET_HEARTBEAT_S", "0")
    cfg = compose(tiny_overrides(tmp_path, "beat", "engine=batched", "trainer.max_epochs=2"))
    with caplog.at_level("INFO", logger="mefnet"):
        run(cfg)
    beats = [r.getMessage() for r in caplog.records if " folds (" in r.getMessage() and " epoch " in r.getMessage()]
    assert any(" epoch 1/2  loss " in b for b in beats), beats
    assert not any("loss nan" in b for b in beats), beats


def test_both_engines_write_one_checkpoint_format(workdir):
    """model.ckpt is the same file for both engines: the fitted member's weights (the ones
    it predicted with), its hyperparameters, epochs and fold, in Lightning's layout; the
    module class rebuilds the fold's model from it."""
    from mefnet.training.module import MERModule

    ckpts = {}
    for engine in ("per_fold", "batched"):
        cfg = compose(tiny_overrides(workdir, f"ckpt-{engine}", f"engine={engine}", VMAP, BATCH,
                                     "save_checkpoint=true"))
        run(cfg)
        files = sorted(Path(cfg.experiment_dir).glob("folds/*/*/model.ckpt"))
        assert files
        ckpts[engine] = {p.parent.name: torch.load(p, weights_only=True) for p in files}
    pf, bt = ckpts["per_fold"], ckpts["batched"]
    assert pf.keys() == bt.keys()
    for fold in pf:
        a, b = pf[fold], bt[fold]
        assert a.keys() == b.keys() == {"state_dict", "hyper_parameters", "epoch", "fold", "pytorch-lightning_version"}
        assert a["fold"].endswith(fold) and a["epoch"] == b["epoch"] and a["hyper_parameters"] == b["hyper_parameters"]
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for key, value in a["state_dict"].items():
            assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-4), (fold, key)
    # Lightning's own loader reads it (the modules not saved as hyperparameters are given).
    fold, ckpt = next(iter(sorted(pf.items())))
    backbone = instantiate_option(compose(tiny_overrides(workdir, "ckpt-load")).backbone,
                           num_classes=ckpt["hyper_parameters"]["num_classes"])
    path = next((workdir / "outputs").glob(f"ckpt-per_fold*/**/{fold}/model.ckpt"))
    module = MERModule.load_from_checkpoint(path, backbone=backbone, loss=nn.CrossEntropyLoss(),
                                            optimizer=torch.optim.Adam, weights_only=True)
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in module.state_dict().items())
