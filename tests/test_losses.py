"""Losses: logit adjustment, class weighting, focal loss, and their configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mefnet.config import instantiate_option
from mefnet.losses import (
    ClassWeightedCrossEntropyLoss,
    CrossEntropyLoss,
    FocalLoss,
    LogitAdjustedLoss,
)

LOSS_CONFIGS = Path(__file__).resolve().parents[1] / "conf" / "loss"
COUNTS = [57, 25, 19]  # the composite benchmark's imbalance, in percent


def _batch(n: int = 16, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator)
    return logits, torch.randint(0, classes, (n,), generator=generator)


def test_logit_adjusted_loss_with_tau_zero_is_exactly_cross_entropy():
    logits, targets = _batch()
    loss = LogitAdjustedLoss(class_counts=COUNTS, tau=0.0)(logits, targets)
    assert torch.equal(loss, F.cross_entropy(logits, targets))


def test_logit_adjusted_loss_adds_tau_times_log_prior():
    logits, targets = _batch()
    prior = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    expected = F.cross_entropy(logits + 0.5 * prior.log().float(), targets)
    loss = LogitAdjustedLoss(class_counts=COUNTS, tau=0.5)(logits, targets)
    assert torch.allclose(loss, expected)


def _fit_threshold(loss: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fit a 2-class linear model on 1-D x; return where its plain logits tie."""
    weight = torch.zeros(2, requires_grad=True)
    bias = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=100, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(x[:, None] * weight + bias, y)
        value.backward()
        return value

    optimizer.step(closure)
    with torch.no_grad():
        return float((bias[0] - bias[1]) / (weight[1] - weight[0]))


def test_logit_adjustment_moves_the_decision_toward_the_rare_class():
    # Class 0 (900 clips) ~ N(0, 1), class 1 (100 clips) ~ N(1, 1), sampled at exact
    # normal quantiles. Plain CE learns the Bayes rule of the imbalanced data, threshold
    # 0.5 + ln 9 = 2.70, so most rare clips are called common; logit adjustment (tau=1)
    # learns the balanced rule, threshold 0.5, which predicts the rare class far more.
    def quantiles(n: int) -> torch.Tensor:
        p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        return (math.sqrt(2) * torch.erfinv(2 * p - 1)).float()

    x = torch.cat([quantiles(900), 1.0 + quantiles(100)])
    y = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    plain = _fit_threshold(CrossEntropyLoss(), x, y)
    adjusted = _fit_threshold(LogitAdjustedLoss(class_counts=[900, 100], tau=1.0), x, y)
    assert plain == pytest.approx(0.5 + math.log(9), abs=0.3)
    assert adjusted == pytest.approx(0.5, abs=0.3)
    assert adjusted < plain - 1.5  # more of x is now called the rare class


def test_logit_adjustment_makes_an_uninformative_input_predict_uniformly():
    # A bias-only model (no input information) fitted with plain CE predicts the prior,
    # i.e. always the majority class; with tau=1 its plain logits become uniform.
    targets = torch.tensor([0] * 57 + [1] * 25 + [2] * 19)

    def fit(loss: torch.nn.Module) -> torch.Tensor:
        bias = torch.zeros(3, requires_grad=True)
        optimizer = torch.optim.LBFGS([bias], max_iter=50, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            value = loss(bias.expand(len(targets), 3), targets)
            value.backward()
            return value

        optimizer.step(closure)
        return torch.softmax(bias.detach(), dim=0)

    plain = fit(CrossEntropyLoss())
    adjusted = fit(LogitAdjustedLoss(class_counts=COUNTS, tau=1.0))
    assert torch.allclose(plain, torch.tensor(COUNTS) / sum(COUNTS), atol=0.01)
    assert torch.allclose(adjusted, torch.full((3,), 1 / 3), atol=0.01)


@pytest.mark.parametrize("loss_cls", [LogitAdjustedLoss, ClassWeightedCrossEntropyLoss])
def test_a_class_absent_from_the_training_fold_is_a_clear_error(loss_cls):
    with pytest.raises(ValueError, match=r"no training clip of class index \[1\].*count_smoothing"):
        loss_cls(class_counts=[10, 0, 5])
    smoothed = loss_cls(class_counts=[10, 0, 5], count_smoothing=1.0)
    assert torch.isfinite(smoothed(*_batch())).all()


@pytest.mark.parametrize("loss_cls", [LogitAdjustedLoss, ClassWeightedCrossEntropyLoss])
def test_prior_losses_need_class_counts_matching_the_logits(loss_cls):
    with pytest.raises(ValueError, match="needs class_counts"):
        loss_cls()
    with pytest.raises(ValueError, match="do not match the 2 classes"):
        loss_cls(class_counts=[3, 4])(*_batch())


def test_class_weights_are_inverse_frequency_with_mean_clip_weight_one():
    weights = ClassWeightedCrossEntropyLoss(class_counts=COUNTS).class_weights.double()
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    assert torch.allclose(weights * counts, (weights * counts)[0].expand(3))
    assert (weights * counts / counts.sum()).sum().item() == pytest.approx(1.0)


def test_weighted_cross_entropy_on_balanced_counts_is_cross_entropy():
    logits, targets = _batch()
    loss = ClassWeightedCrossEntropyLoss(class_counts=[7, 7, 7])(logits, targets)
    assert torch.allclose(loss, F.cross_entropy(logits, targets))


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits, targets = _batch()
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, targets), F.cross_entropy(logits, targets))


def test_focal_loss_down_weights_well_classified_clips():
    confident = torch.tensor([[4.0, 0.0, 0.0]])
    target = torch.tensor([0])
    assert FocalLoss(gamma=2.0)(confident, target) < 0.01 * F.cross_entropy(confident, target)


def test_balanced_focal_loss_uses_inverse_frequency_weights():
    logits, targets = _batch()
    balanced = FocalLoss(class_counts=COUNTS, gamma=0.0, alpha="balanced")
    weights = ClassWeightedCrossEntropyLoss(class_counts=COUNTS).class_weights
    expected = (F.cross_entropy(logits, targets, reduction="none") * weights[targets]).mean()
    assert torch.allclose(balanced(logits, targets), expected)
    with pytest.raises(ValueError, match="needs class_counts"):
        FocalLoss(alpha="balanced")
    with pytest.raises(ValueError, match="alpha='inverse' is not allowed"):
        FocalLoss(alpha="inverse")


@pytest.mark.parametrize(
    "name", ["cross_entropy", "logit_adjusted", "weighted_cross_entropy", "focal"]
)
def test_every_loss_config_builds_with_the_training_fold_counts(name: str):
    factory = instantiate_option(OmegaConf.load(LOSS_CONFIGS / f"{name}.yaml"))
    loss = factory(class_counts=COUNTS)
    value = loss(*_batch())
    assert value.dim() == 0 and torch.isfinite(value)


def test_losses_only_depend_on_logits_and_targets_not_on_prediction():
    # Logit adjustment leaves the logits the model predicts with untouched.
    logits, _ = _batch()
    loss = LogitAdjustedLoss(class_counts=COUNTS, tau=1.0)
    before = logits.clone()
    loss.adjusted_logits(logits)
    assert torch.equal(logits, before)
