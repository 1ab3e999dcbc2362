"""The action-unit task (``task=au``): multi-label AU recognition with the same backbones.

* **Targets**: each clip's normalised AUs (``Clip.aus``, parsed from the dataset's own
  notation by :mod:`mefnet.datasets.action_units`) as a multi-hot row over
  ``task.au_set``. A clip with no AU of the set is dropped (``no_au_clips: drop``, the
  default; every such clip is listed in ``ClipIndex.skipped`` and the log) or kept with
  an all-zero row (``keep``).
* **Clips without AU annotation** are left out of AU training and scoring (listed in
  ``ClipIndex.skipped`` and the log): a clip whose ``aus`` cell says ``?`` / ``NA``
  (``Clip.aus == NOT_ANNOTATED``), and every clip of a dataset in which no clip carries
  any AU (SMIC in a composite, a flow folder without an ``aus`` column). An index with
  no annotated clip at all is an error, never a run on empty targets.
* **Model**: the backbone with one output per AU (its head sized by the task), sigmoid.
* **Loss**: binary cross-entropy, with per-AU positive weights ``negatives / positives``
  counted on the training fold only (``pos_weight: true``; an AU with no positive
  training clip gets weight 1).
* **Thresholds**: ``threshold: fixed`` uses ``threshold_value`` (0.5) for every AU;
  ``inner_val`` picks, per AU, the threshold with the best F1 on the inner-validation
  subjects' predictions at the chosen epoch (training subjects only; needs
  ``selection=inner_val``).
* **Inner validation**: the same rule as the emotion task, on AU scores: ``uf1`` means
  the macro F1 over AUs, ``uar`` the average binary F1, ``accuracy`` the per-label
  accuracy, ``loss`` the plain binary cross-entropy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mefnet.datasets.action_units import au_names, au_vector, check_au_set, parse_normalised
from mefnet.datasets.clip_index import ClipIndex, DatasetError
from mefnet.report.au_metrics import au_scores
from mefnet.training.module import MERModule
from mefnet.training.selection import InnerValidation

log = logging.getLogger("mefnet")

THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))


@dataclass(frozen=True)
class AUTask:
    au_set: tuple[int, ...]
    no_au_clips: str = "drop"
    pos_weight: bool = True
    threshold: str = "fixed"
    threshold_value: float = 0.5

    @classmethod
    def from_config(cls, task) -> AUTask:
        no_au = str(task.get("no_au_clips", "drop"))
        if no_au not in ("drop", "keep"):
            raise ValueError(f"task.no_au_clips: '{no_au}' is not one of drop, keep")
        threshold = str(task.get("threshold", "fixed"))
        if threshold not in ("fixed", "inner_val"):
            raise ValueError(f"task.threshold: '{threshold}' is not one of fixed, inner_val")
        value = float(task.get("threshold_value", 0.5))
        if not 0.0 < value < 1.0:
            raise ValueError(f"task.threshold_value: {value} is not between 0 and 1")
        return cls(check_au_set(list(task.get("au_set") or [])), no_au, bool(task.get("pos_weight", True)),
                   threshold, value)

    @property
    def names(self) -> list[str]:
        return au_names(self.au_set)


def is_au(cfg) -> bool:
    task = cfg.get("task") if cfg is not None else None
    return task is not None and str(task.get("name", "emotion")) == "au"


def prepare_index(index: ClipIndex, task: AUTask) -> ClipIndex:
    """The clips the AU task uses (see the module docstring); the others are listed."""
    from mefnet.datasets.action_units import is_annotated

    coded = {c.dataset for c in index if c.aus and is_annotated(c.aus)}
    if not coded:
        raise DatasetError(
            f"task=au: no action-unit annotation on any clip of {index.name or 'the index'} (dataset(s) "
            f"{index.datasets}; SMIC has none, and a flow folder or frames_csv needs an aus column: "
            "see docs/action_units.md, or fill it with mefnet-aus attach)"
        )
    annotated, unannotated = [], []
    for c in index:
        (annotated if c.dataset in coded and is_annotated(c.aus) else unannotated).append(c)
    skipped = list(index.skipped)
    if unannotated:
        per_dataset = {d: sum(c.dataset == d for c in unannotated) for d in dict.fromkeys(c.dataset for c in unannotated)}
        log.warning("task=au: %d of %d clips have no action-unit annotation and are left out of AU training "
                    "and scoring (%s)", len(unannotated), len(index),
                    ", ".join(f"{d}: {n}" for d, n in per_dataset.items()))
        # A dataset without any AU code is one entry (SMIC would be 164 lines); a clip marked
        # not annotated in an annotated dataset is named.
        skipped += [f"{d}: all {n} clips: no action-unit annotation in the dataset (left out of the AU task)"
                    for d, n in per_dataset.items() if d not in coded]
        skipped += [f"{c.clip_key}: no action-unit annotation (left out of the AU task)"
                    for c in unannotated if c.dataset in coded]
    wanted = set(task.au_set)
    kept, dropped = [], []
    for c in annotated:
        (kept if task.no_au_clips == "keep" or set(parse_normalised(c.aus)) & wanted else dropped).append(c)
    if dropped:
        listing = ", ".join(f"{c.clip_key} ({c.aus or 'no AU'})" for c in dropped[:20])
        log.warning("task=au: %d of %d clips have no AU of %s and are left out (task.no_au_clips=drop): %s%s",
                    len(dropped), len(annotated), list(task.au_set), listing, " ..." if len(dropped) > 20 else "")
    skipped += [f"{c.clip_key}: no AU of the AU set (AUs: {c.aus or 'none'})" for c in dropped]
    if not kept:
        raise DatasetError(f"task=au: no clip of {index.name or 'the index'} has an AU of {list(task.au_set)}")
    out = index.with_clips(kept)
    out.skipped = skipped
    return out


def targets(index: ClipIndex, au_set: Sequence[int]) -> torch.Tensor:
    """(clips, AUs) float multi-hot targets."""
    return torch.tensor([au_vector(parse_normalised(c.aus), au_set) for c in index], dtype=torch.float32)


def positive_weights(train_targets: torch.Tensor) -> torch.Tensor:
    """negatives / positives per AU over the training fold (1 where an AU has no positive)."""
    pos = train_targets.sum(dim=0)
    neg = len(train_targets) - pos
    return torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos))


class AUBCELoss(nn.Module):
    """Binary cross-entropy over AUs, optionally with per-AU positive weights."""

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pw = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), pos_weight=pw)


class AUModule(MERModule):
    """:class:`MERModule` for multi-label AUs: BCE training, sigmoid predictions."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The multiclass metrics of the parent do not apply.
        del self.train_uf1, self.train_uar, self.val_scores, self.val_loss
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self.last_validation: tuple[torch.Tensor, torch.Tensor] | None = None

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.augment is not None:
            x = self.augment(x)
        logits = self(x)
        loss = self.loss_fn(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def val_update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Collect one batch of inner-validation logits and targets (scored at the epoch end)."""
        self._val_logits.append(self(x).float().detach().cpu())
        self._val_targets.append(y.float().cpu())

    def val_compute(self) -> dict[str, torch.Tensor]:
        """AU scores of the validation clips seen since the last call: ``uf1`` = macro F1 over
        AUs, ``uar`` = average binary F1, ``accuracy`` = per-label accuracy, ``loss`` = plain
        binary cross-entropy (thresholds at 0.5). Keeps ``last_validation`` (probabilities,
        targets) for the per-AU thresholds."""
        logits, y = torch.cat(self._val_logits), torch.cat(self._val_targets)
        self._val_logits, self._val_targets = [], []
        probs = torch.sigmoid(logits)
        self.last_validation = (probs, y)
        m = au_scores(y.numpy(), (probs >= 0.5).int().numpy())
        return {"loss": F.binary_cross_entropy_with_logits(logits, y),
                "uf1": torch.tensor(m["macro_f1"]), "uar": torch.tensor(m["avg_binary_f1"]),
                "accuracy": torch.tensor(m["label_accuracy"])}

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-AU probabilities (sigmoid), averaged with the mirrored face's under
        ``test_time_mirror`` (AUs are recorded without their side)."""
        probs = torch.sigmoid(self(x))
        if self.test_time_mirror is not None:
            probs = (probs + torch.sigmoid(self(self.test_time_mirror.mirror(x)))) / 2
        return probs


class AUInnerValidation(InnerValidation):
    """Inner validation on AU scores (logged by :meth:`AUModule.validation_step`); also
    keeps each scheduled evaluation's probabilities, for per-AU thresholds."""

    def __init__(self, num_outputs: int, **kwargs) -> None:
        super().__init__(num_outputs, **kwargs)
        self.probs: dict[int, torch.Tensor] = {}
        self.y: torch.Tensor | None = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        n = len(self.curve)
        super().on_train_epoch_end(trainer, pl_module)
        if len(self.curve) > n:  # this epoch entered the curve
            probs, y = pl_module.last_validation
            self.probs[self.curve[-1]["epoch"]] = probs
            self.y = y

    def thresholds(self) -> list[float]:
        """Per AU, the grid threshold with the best validation F1 at the chosen epoch (ties:
        the one nearest 0.5); 0.5 for an AU without a positive validation clip."""
        probs = self.probs[self.best_epoch].numpy()
        y = self.y.numpy().astype(bool)
        out = []
        for k in range(y.shape[1]):
            if not y[:, k].any():
                out.append(0.5)
                continue
            best = max(THRESHOLD_GRID, key=lambda t: (_f1(y[:, k], probs[:, k] >= t), -abs(t - 0.5)))
            out.append(float(best))
        return out


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    tp = float(np.sum(y & p))
    denom = 2 * tp + float(np.sum(~y & p)) + float(np.sum(y & ~p))
    return 2 * tp / denom if denom else 0.0
