"""The action-unit task's training parts: its LightningModule and its inner validation.

What the AU task predicts and how it is scored (targets, loss, thresholds grid, scores)
is :mod:`mefnet.tasks.au`; this module trains it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mefnet.tasks.au import THRESHOLD_GRID, au_scores
from mefnet.training.augment import mirror_averaged
from mefnet.training.module import MERModule
from mefnet.training.selection import InnerValidation
from mefnet.utils.metrics import binary_f1


class AUModule(MERModule):
    """:class:`MERModule` for multi-label AUs: BCE training, sigmoid predictions."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The multiclass metrics of the parent do not apply.
        del self.train_uf1, self.train_uar, self.val_scores, self.val_loss
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self.last_validation: tuple[torch.Tensor, torch.Tensor] | None = None

    def train_metrics(self) -> dict:
        """None: training logs the loss only (the AU scores need thresholds)."""
        return {}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss, _ = self.step_loss(x, y)
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
        return mirror_averaged(lambda maps: torch.sigmoid(self(maps)), x, self.test_time_mirror)


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
            model = pl_module if self.member is None else pl_module.members[self.member]
            probs, y = model.last_validation
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
            best = max(THRESHOLD_GRID, key=lambda t: (binary_f1(y[:, k], probs[:, k] >= t), -abs(t - 0.5)))
            out.append(float(best))
        return out
