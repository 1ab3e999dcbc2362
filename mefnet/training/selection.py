"""Leak-free model selection: an inner validation split made of training subjects.

``selection: inner_val`` (see ``conf/train.yaml``) holds out a seeded group of
*training* subjects, trains on the rest, scores the held-out group with Lightning's
validation loop (``MERDataModule.val_dataloader``, ``MERModule.validation_step``) and
picks the epoch with the best (smoothed) validation score. The test subject plays no
part: it is neither in the inner training set nor in the validation set, and it is
predicted once, after the choice is made (docs/protocol.md).

Then either the model is trained again on the whole training fold for the chosen number
of epochs (``refit: true``, the default: no training subject is wasted) or the weights
of the chosen epoch are kept (``refit: false``).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Sequence

import lightning as L
import numpy as np

from mefnet.datasets.clip_index import ClipIndex
from mefnet.schema import INNER_VAL_METRICS as METRICS  # the schema owns the list
from mefnet.schema import choice


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
    """Model selection on the inner validation scores that Lightning's validation loop logs.

    The validation itself is Lightning's: the data module's ``val_dataloader`` holds the
    inner-validation clips (training subjects only), the module's ``validation_step``
    scores them with torchmetrics and logs ``val/loss`` (plain cross-entropy on the
    logits), ``val/uf1``, ``val/uar`` and ``val/accuracy``. This callback only reads
    those scores after every ``every_n_epochs`` epochs (and after the last one), keeps
    the curve, the best epoch by ``metric`` (smoothed over a centred window of
    ``smooth`` evaluations; ties go to the earlier epoch) and, with ``keep_best``, a copy
    of the weights of that epoch.

    ``member``/``suffix`` select one model of a batched fit
    (:class:`mefnet.training.batched.BatchedMERModule`): its scores are logged as
    ``val/<name><suffix>`` and its weights are ``pl_module.members[member]``.
    """

    def __init__(
        self,
        num_classes: int,
        metric: str = "uf1",
        smooth: int = 1,
        every_n_epochs: int = 1,
        min_epochs: int = 1,
        keep_best: bool = False,
        member: int | None = None,
        suffix: str = "",
    ) -> None:
        choice("inner_val.metric", metric, METRICS)
        self.num_classes = num_classes
        self.metric = metric
        self.smooth = max(1, int(smooth))
        self.every = max(1, int(every_n_epochs))
        self.min_epochs = max(1, int(min_epochs))
        self.keep_best = keep_best
        self.member = member
        self.suffix = suffix
        self.curve: list[dict] = []
        self._states: dict[int, dict] = {}
        self._validated_epoch: int | None = None

    def scheduled(self, epoch: int, max_epochs: int) -> bool:
        """Whether the validation scores after ``epoch`` epochs enter the curve."""
        return epoch % self.every == 0 or epoch == max_epochs

    @staticmethod
    def check_every_n_epochs(every_n_epochs: int, max_epochs: int) -> int:
        """The trainer's ``check_val_every_n_epoch`` that validates at least on every
        scheduled epoch (the multiples of ``every_n_epochs`` and the last one)."""
        return math.gcd(max(1, int(every_n_epochs)), max(1, int(max_epochs)))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # epochs completed
        if not self.scheduled(epoch, trainer.max_epochs):
            return
        if self._validated_epoch != trainer.current_epoch:
            raise RuntimeError(
                f"inner validation: no validation ran after epoch {epoch}; the trainer must validate "
                f"every {self.check_every_n_epochs(self.every, trainer.max_epochs)} epochs with "
                "limit_val_batches > 0"
            )
        logged = trainer.callback_metrics
        row = {"epoch": epoch}
        for k in ("loss", "uf1", "uar", "accuracy"):
            key = f"val/{k}{self.suffix}"
            if key not in logged:
                raise RuntimeError(f"inner validation: '{key}' was not logged by the validation loop")
            row[k] = float(logged[key])
        self.curve.append(row)
        if self.keep_best:
            model = pl_module if self.member is None else pl_module.members[self.member]
            self._keep(epoch, copy.deepcopy(model.state_dict()))

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
