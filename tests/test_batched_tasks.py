"""engine=batched beyond emotion classes under LOSO: protocol=lodo / holdout, task=au and
task=emotion_au give the predictions engine=per_fold gives (within the 1e-4 of
tests/test_batched.py), the same chosen epochs and, for task=au with
task.threshold=inner_val, the same per-AU thresholds; on the vmapped and on the looped
path."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mefnet.config import compose
from mefnet.experiment.train import run
from mefnet.runs.store import AU_PREDICTIONS, PREDICTIONS
from mefnet.training.batched import BatchedMERModule, _Template
from tests import test_emotion_au
from tests.helpers import assert_same_selection, tiny_overrides
from tests.test_batched import BATCH, INNER_VAL, VMAP
from tests.test_emotion_au import _overrides as mixed_overrides
from tests.test_emotion_au import _run
from tests.test_protocols_tasks import multi_overrides

mixed_folder = test_emotion_au.mixed_folder  # the fixture: SMIC (no AUs) and CASME II flows
LOOPED = "++vectorize=false"
HOLDOUT = ["protocol=holdout", "protocol.train=[synth_a,synth_b]", "protocol.test=[synth_c]"]
AU = ["task=au", "task.au_set=[1,2,4,12]"]
# (dataset=synthetic_multi, overrides). Inner validation at batches of 256 (one step per
# epoch), as test_batched does: with several steps the engines' 1e-7 roundings can tie
# a validation score differently and choose another epoch.
CASES = {
    "lodo-fixed": (True, ["protocol=lodo", BATCH, "augment=flow"]),
    "lodo-fixed-looped": (True, ["protocol=lodo", BATCH, LOOPED]),
    "lodo-inner-keep": (True, ["protocol=lodo", *INNER_VAL, "inner_val.refit=false", "data.batch_size=256"]),
    "holdout-fixed": (True, [*HOLDOUT, BATCH]),
    "holdout-inner-refit": (True, [*HOLDOUT, *INNER_VAL, "inner_val.refit=true", "data.batch_size=256"]),
    "au-fixed": (False, [*AU, BATCH, "augment=flow"]),
    "au-fixed-looped": (False, [*AU, BATCH, LOOPED]),
    "au-inner-thresholds": (False, [*AU, "task.threshold=inner_val", *INNER_VAL, "inner_val.refit=false",
                                    "data.batch_size=256"]),
    "au-lodo-inner-refit": (True, [*AU, "protocol=lodo", "task.threshold=inner_val", *INNER_VAL,
                                   "inner_val.refit=true", "data.batch_size=256", LOOPED]),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("batched_tasks")


def _overrides(workdir: Path, name: str, multi: bool, *extra: str) -> list[str]:
    return (multi_overrides if multi else tiny_overrides)(workdir, name, *extra)


def _rows(exp: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    out = {}
    for p in sorted(exp.glob("folds/*/*/predictions.csv")):
        for r in csv.DictReader(p.open(newline="")):
            out[(r["dataset"], r["subject"], r["clip"])] = r
    return out



def _count_steps(monkeypatch) -> tuple[list[int], list[int]]:
    """The members of each vmapped forward call, and of each batched training step."""
    calls: list[int] = []
    steps: list[int] = []
    original, original_step = _Template.__call__, BatchedMERModule.training_step

    def counted(self, params, buffers, x, masks):
        calls.append(len(x))
        return original(self, params, buffers, x, masks)

    def stepped(self, batch, batch_idx):
        out = original_step(self, batch, batch_idx)
        steps.append(len(self.stepped))
        return out

    monkeypatch.setattr(_Template, "__call__", counted)
    monkeypatch.setattr(BatchedMERModule, "training_step", stepped)
    return calls, steps


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_equals_per_fold_on_other_protocols_and_tasks(workdir, monkeypatch, case):
    """Every clip's probabilities within 1e-4 of per_fold's, the same folds, chosen epochs,
    validation subjects and per-AU thresholds; the steps ran vmapped (or looped)."""
    calls, steps = _count_steps(monkeypatch)
    multi, extra = CASES[case]
    exps = {}
    for engine in ("per_fold", "batched"):
        cfg = compose(_overrides(workdir, f"{case}-{engine}", multi, f"engine={engine}", VMAP, *extra))
        assert cfg.dataset.name == ("synthetic_multi" if multi else "synthetic")
        run(cfg)
        exps[engine] = Path(cfg.experiment_dir)
        if engine == "per_fold":
            assert not steps
    # The batched engine trained the folds together (one member for holdout's one fold).
    assert steps and max(steps) == (1 if "protocol=holdout" in extra else 3 if multi else 4)
    assert bool(calls) == (LOOPED not in extra)
    a, b = _rows(exps["per_fold"]), _rows(exps["batched"])
    assert a.keys() == b.keys() and len(a) >= 12
    probs = [k for k in next(iter(a.values())) if k.startswith("prob_")]
    assert probs and max(abs(float(a[c][k]) - float(b[c][k])) for c in a for k in probs) <= 1e-4
    # The thresholds (task=au) and so every predicted label are the same.
    for c in a:
        assert {k: v for k, v in a[c].items() if k.startswith(("thr_", "pred"))} == \
            {k: v for k, v in b[c].items() if k.startswith(("thr_", "pred"))}, c
    pairs = assert_same_selection(exps["per_fold"], exps["batched"])
    if "task.threshold=inner_val" in extra:
        assert all(sa["thresholds"] == sb["thresholds"] for sa, sb in pairs.values())
        # thresholds really chosen, not all the fixed 0.5
        assert any(t != 0.5 for _, sb in pairs.values() for t in sb["thresholds"].values())


def _fold_logs(exp: Path) -> dict[str, list[dict]]:
    return {str(p.parent.parent.relative_to(exp / "folds")): list(csv.DictReader(p.open(newline="")))
            for p in sorted(exp.glob("folds/*/*/logs/metrics.csv"))}


@pytest.mark.parametrize("path", ["vmapped", "looped"])
def test_batched_equals_per_fold_for_emotion_au(mixed_folder, tmp_path, monkeypatch, path):
    """task=emotion_au (the AU head on the penultimate features, its masked loss; SMIC
    clips without AUs, so some batches give the head no gradient): the emotion and the AU
    probabilities within 1e-4 of per_fold's, and each fold's log with per_fold's columns
    (train/emotion_loss, train/au_loss) and values."""
    calls, steps = _count_steps(monkeypatch)
    extra = ["task=emotion_au", "task.au_set=[4,12]", "data.batch_size=4", "trainer.max_epochs=2", "logger=csv",
             "augment=flow", "backbone=am3f", VMAP if path == "vmapped" else LOOPED]
    exps = {}
    for engine in ("per_fold", "batched"):
        exps[engine] = _run(mixed_overrides(mixed_folder, tmp_path, f"mtl-{engine}", f"engine={engine}", *extra))
    assert steps and max(steps) == 4 and bool(calls) == (path == "vmapped")
    for name in (PREDICTIONS, AU_PREDICTIONS):
        a, b = ({(r["dataset"], r["subject"], r["clip"]): r for p in sorted(e.glob(f"folds/*/*/{name}"))
                 for r in csv.DictReader(p.open(newline=""))} for e in (exps["per_fold"], exps["batched"]))
        assert a.keys() == b.keys() and len(a) >= 11, name
        probs = [k for k in next(iter(a.values())) if k.startswith("prob_")]
        assert max(abs(float(a[c][k]) - float(b[c][k])) for c in a for k in probs) <= 1e-4, name
    pf, bt = _fold_logs(exps["per_fold"]), _fold_logs(exps["batched"])
    assert pf.keys() == bt.keys() and len(pf) == 4
    for fold in pf:
        assert {"train/emotion_loss", "train/au_loss"} <= set(pf[fold][0]) and set(pf[fold][0]) == set(bt[fold][0])
        for key in ("train/loss", "train/emotion_loss", "train/au_loss", "train/uf1"):
            va = [float(r[key]) for r in pf[fold] if r.get(key)]
            vb = [float(r[key]) for r in bt[fold] if r.get(key)]
            assert va and va == pytest.approx(vb, abs=1e-4), (fold, key)


def test_engine_auto_chooses_batched_for_lodo_holdout_and_the_au_tasks(tmp_path):
    """``engine=auto``: batched for protocol=lodo / holdout, task=au and task=emotion_au
    as for emotion classes under LOSO."""
    from mefnet.experiment.train import resolve_engine

    for extra in (["protocol=lodo"], HOLDOUT, AU, [*AU, "protocol=lodo"]):
        assert resolve_engine(compose(_overrides(tmp_path, "e", True, *extra))) == "batched", extra
    assert resolve_engine(compose(tiny_overrides(tmp_path, "e", "task=emotion_au"))) == "batched"


def test_a_group_trained_together_shares_its_task(tmp_path):
    """Members vmapped together have one network: a group mixing tasks is refused, named."""
    from mefnet.experiment.batched import _check_compatible

    with pytest.raises(ValueError, match="engine=batched: the runs trained together must share 'task'"):
        _check_compatible([compose(tiny_overrides(tmp_path, "e")), compose(tiny_overrides(tmp_path, "e", *AU))])
