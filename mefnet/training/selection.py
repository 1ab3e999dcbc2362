"""Leak-free model selection: an inner validation split made of training subjects.

``selection: inner_val`` (see ``conf/train.yaml``) holds out a seeded group of
*training* subjects, trains on the rest, scores the held-out group after every epoch and
picks the epoch with the best (smoothed) validation score. The test subject plays no
part: it is neither in the inner training set nor in the validation set, and it is
predicted once, after the choice is made (docs/protocol.md).

Then either the model is trained again on the whole training fold for the chosen number
of epochs (``refit: true``, the default: no training subject is wasted) or the weights
of the chosen epoch are kept (``refit: false``).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from mefnet.datasets.clip_index import ClipIndex

METRICS = ("uf1", "uar", "accuracy", "loss")


def choose_val_subjects(
    index: ClipIndex, test_subject: str, fraction: float, seed: int, attempts: int = 200,
    train_subjects: Sequence[str] | None = None,
) -> list[str]:
    """A seeded group of training subjects (never ``test_subject``) for inner validation.

    ``fraction`` of the training subjects (at least one, at most all but one) are drawn
    with a generator seeded by ``seed`` and the test subject's name, so every fold gets
    its own, reproducible draw. Among ``attempts`` draws the first whose remaining
    training subjects still contain every class is taken, preferring one whose
    validation subjects contain every class as well.

    ``train_subjects``: the fold's training subjects when the protocol is not
    leave-one-subject-out (``test_subject`` is then the fold key, used for the seed); the
    classes to keep are those these subjects have.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"inner_val.val_fraction: {fraction} is not between 0 and 1 (exclusive)")
    if train_subjects is None:
        test_key = index.resolve_subject(test_subject)
        subjects = [s for s in index.subjects if s != test_key]
    else:
        test_key, subjects = str(test_subject), list(train_subjects)
    if len(subjects) < 2:
        raise ValueError(f"inner validation needs at least 2 training subjects, fold {test_key} has {len(subjects)}")
    k = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    classes_of: dict[str, set[int]] = {s: set() for s in subjects}
    for c in index:
        if c.subject_key in classes_of:
            classes_of[c.subject_key].add(c.label)
    all_classes = (set(range(index.num_classes)) if train_subjects is None
                   else set().union(*classes_of.values()))
    rng = np.random.default_rng([int(seed), zlib.crc32(test_key.encode())])
    fallback: list[str] | None = None
    for _ in range(attempts):
        val = sorted(rng.choice(subjects, size=k, replace=False).tolist())
        train_classes = set().union(*(classes_of[s] for s in subjects if s not in val))
        if train_classes != all_classes:
            continue
        if set().union(*(classes_of[s] for s in val)) == all_classes:
            return val
        fallback = fallback or val
    if fallback is None:
        raise ValueError(
            f"fold {test_key}: no draw of {k} validation subjects leaves every class in the inner training set"
        )
    return fallback


class InnerValidation(L.Callback):
    """Scores the inner validation clips after every ``every_n_epochs`` epochs.

    Logs ``val/loss`` (plain cross-entropy on the logits), ``val/uf1``, ``val/uar`` and
    ``val/accuracy``; keeps the curve, the best epoch by ``metric`` (smoothed over a
    centred window of ``smooth`` evaluations; ties go to the earlier epoch) and, with
    ``keep_best``, a copy of the weights of that epoch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        metric: str = "uf1",
        smooth: int = 1,
        every_n_epochs: int = 1,
        min_epochs: int = 1,
        keep_best: bool = False,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"inner_val.metric: '{metric}' is not one of {', '.join(METRICS)}")
        if len(y) == 0:
            raise ValueError("inner validation set is empty")
        self.x, self.y = x, y
        self.num_classes = num_classes
        self.metric = metric
        self.smooth = max(1, int(smooth))
        self.every = max(1, int(every_n_epochs))
        self.min_epochs = max(1, int(min_epochs))
        self.keep_best = keep_best
        self.curve: list[dict] = []
        self._states: dict[int, dict] = {}

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # epochs completed
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        was_training = pl_module.training
        pl_module.eval()
        logits = pl_module(self.x.to(pl_module.device)).float().cpu()
        pl_module.train(was_training)
        pred = logits.argmax(dim=1).tolist()
        m = _scores(self.y.tolist(), pred, self.num_classes)
        row = {
            "epoch": epoch,
            "loss": float(F.cross_entropy(logits, self.y)),
            "uf1": m["uf1"],
            "uar": m["uar"],
            "accuracy": m["accuracy"],
        }
        self.curve.append(row)
        for k in ("loss", "uf1", "uar", "accuracy"):
            pl_module.log(f"val/{k}", row[k], on_step=False, on_epoch=True)
        if self.keep_best:
            self._keep(epoch, copy.deepcopy(pl_module.state_dict()))

    def _keep(self, epoch: int, state: dict) -> None:
        """Remember the weights of the evaluation just appended to the curve."""
        self._states[epoch] = state
        # An evaluation's smoothed score is final once the evaluations after it that its
        # window covers are in. A final score that is not the best final score can never
        # become the best, so keep: the best final one, and every one whose score can
        # still change.
        n, h = len(self.curve), self.smooth // 2
        final = [i for i in range(n) if i + h < n]
        keep = {r["epoch"] for r in self.curve[max(0, n - h):]}
        best_final = self._best_index(final)
        if best_final is not None:
            keep.add(self.curve[best_final]["epoch"])
        self._states = {e: st for e, st in self._states.items() if e in keep}

    def _scores(self) -> list[float]:
        vals = [(-r["loss"] if self.metric == "loss" else r[self.metric]) for r in self.curve]
        h = self.smooth // 2
        return [float(np.mean(vals[max(0, i - h): i + h + 1])) for i in range(len(vals))]

    def _best_index(self, indices: list[int]) -> int | None:
        """The best of these evaluations by smoothed score (ties: the earliest), preferring
        those at or after ``min_epochs``."""
        if not indices:
            return None
        scores = self._scores()
        eligible = [i for i in indices if self.curve[i]["epoch"] >= self.min_epochs] or indices
        return max(eligible, key=lambda i: (scores[i], -i))

    @property
    def best_epoch(self) -> int:
        if not self.curve:
            raise RuntimeError("no validation score recorded")
        return int(self.curve[self._best_index(list(range(len(self.curve))))]["epoch"])

    def best_state(self) -> dict:
        return self._states[self.best_epoch]

    def summary(self) -> dict:
        best = self.best_epoch
        row = next(r for r in self.curve if r["epoch"] == best)
        return {"metric": self.metric, "smooth": self.smooth, "best_epoch": best, "best": row, "curve": self.curve}


def _scores(y_true: list[int], y_pred: list[int], num_classes: int) -> dict:
    """UF1 / UAR / accuracy over the classes present in the validation ground truth
    (a small validation group may lack a class; its F1 and recall are then undefined)."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    present = support > 0
    f1 = 2 * tp / np.maximum(2 * tp + (cm.sum(axis=0) - tp) + (support - tp), 1)
    recall = tp / np.maximum(support, 1)
    return {
        "uf1": float(f1[present].mean()),
        "uar": float(recall[present].mean()),
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
    }


def val_tensors(features: torch.Tensor, index: ClipIndex, val_idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.tensor([index[i].label for i in val_idx], dtype=torch.long)
    return features[list(val_idx)], y
