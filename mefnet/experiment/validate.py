"""Checks on a training config's values, made before any work, each naming its key.

A value out of range is refused, never clamped: what the table prints is what ran.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from mefnet.config import ConfigError, check_experiment_name
from mefnet.runs.selection import RULES, uses_inner_val
from mefnet.training.pretrain import check_pretrain_config


def _get(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        if node is None or part not in node:
            return None
        node = node[part]
    return node


def _integer(cfg: DictConfig, key: str, low: int, high: int | None = None, hint: str = "") -> int | None:
    value = _get(cfg, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            value = int(float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: {value!r} is not a whole number{hint}") from None
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{key}: {value} is out of range; it must be {bound}{hint}")
    return value


def _number(cfg: DictConfig, key: str, low: float, high: float | None = None, open_low: bool = True,
            open_high: bool = True) -> float | None:
    value = _get(cfg, key)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a number") from None
    too_low = value <= low if open_low else value < low
    too_high = high is not None and (value >= high if open_high else value > high)
    if not math.isfinite(value) or too_low or too_high:
        lo = f"> {low}" if open_low else f">= {low}"
        hi = "" if high is None else (f" and < {high}" if open_high else f" and <= {high}")
        raise ConfigError(f"{key}: {value} is out of range; it must be {lo}{hi}")
    return value


# Lightning strategies that keep training and prediction in this one process.
_ONE_PROCESS_STRATEGIES = ("auto", "single_device")
_PARALLEL_HINT = ("run folds in parallel instead: n_jobs=N (fold=all) or "
                  "mefnet-train -m fold=each hydra/launcher=joblib")


def check_one_process(cfg: DictConfig) -> None:
    """Refuse a trainer that would train or predict a fold in several processes (DDP and
    the like), naming the key: under such a strategy ``trainer.predict`` returns only this
    process's shard of the test clips, and mefnet offers no multi-process training."""
    trainer = cfg.get("trainer") or {}
    strategy = trainer.get("strategy")
    if strategy is not None and (not isinstance(strategy, str) or strategy not in _ONE_PROCESS_STRATEGIES):
        shown = strategy if isinstance(strategy, str) else strategy.get("_target_", strategy)
        raise ConfigError(
            f"trainer.strategy: {shown!r} is not supported; mefnet trains and predicts each fold in one "
            f"process on one device ({' or '.join(_ONE_PROCESS_STRATEGIES)}), since a multi-process "
            f"strategy predicts only a shard of the test clips per process; {_PARALLEL_HINT}"
        )
    devices = trainer.get("devices")
    if devices is not None and not (str(devices) == "1" or (_is_list(devices) and len(devices) == 1)):
        raise ConfigError(
            f"trainer.devices: {devices!r} is not supported; mefnet trains each fold on one device "
            f"(devices: 1, or a list of one device id such as [0]); {_PARALLEL_HINT}"
        )
    nodes = trainer.get("num_nodes")
    if nodes is not None and str(nodes) != "1":
        raise ConfigError(f"trainer.num_nodes: {nodes!r} is not supported; mefnet trains each fold on one "
                          f"machine (num_nodes: 1); {_PARALLEL_HINT}")


def _is_list(value) -> bool:
    from omegaconf import ListConfig

    return isinstance(value, (list, tuple, ListConfig))


def check_train_config(cfg: DictConfig) -> None:
    """Refuse a training config whose values cannot work, naming the key (before any work)."""
    check_experiment_name(cfg.get("experiment_name"))
    check_one_process(cfg)
    _integer(cfg, "seed", -(2**63))
    _integer(cfg, "data.batch_size", 1)
    _number(cfg, "optimizer.lr", 0.0)
    _integer(cfg, "n_jobs", 1, hint=" (processes running folds at once)")
    _integer(cfg, "preprocessing.n_jobs", 1, hint=" (processes filling the flow cache)")
    _integer(cfg, "threads_per_fold", 1)
    max_epochs = _integer(cfg, "trainer.max_epochs", 1, hint=" (epochs to train)")
    _integer(cfg, "preprocessing.size", 1)
    if str(cfg.get("fold")) == "each":
        raise ConfigError(
            "fold=each expands to one job per subject and needs a multirun: "
            "mefnet-train -m fold=each (add hydra/launcher=joblib to run the folds in parallel)"
        )
    selection = cfg.get("selection")
    if selection not in RULES:
        raise ConfigError(f"selection: {selection!r} is not supported; use fixed_epochs or inner_val")
    if uses_inner_val(selection):
        if cfg.get("inner_val") is None:
            raise ConfigError("selection=inner_val needs the inner_val block "
                              "(val_fraction, metric, smooth, every_n_epochs, min_epochs, refit)")
        _number(cfg, "inner_val.val_fraction", 0.0, 1.0)
        _integer(cfg, "inner_val.smooth", 1, hint=" (evaluations in the moving average)")
        _integer(cfg, "inner_val.every_n_epochs", 1, hint=" (the last epoch is always evaluated too)")
        _integer(cfg, "inner_val.min_epochs", 1, max_epochs,
                 hint=" (and at most trainer.max_epochs, or no epoch qualifies)")
        metric = _get(cfg, "inner_val.metric")
        if metric not in ("uf1", "uar", "accuracy", "loss"):
            raise ConfigError(f"inner_val.metric: {metric!r} is not one of uf1, uar, accuracy, loss")

    try:
        check_pretrain_config(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    check_backbone_keys(cfg)


def check_backbone_keys(cfg: DictConfig) -> None:
    """Refuse a ``backbone`` key its model does not take, naming it (an experiment's setting
    for one backbone left over after ``backbone=`` chose another, or a typo)."""
    import importlib
    import inspect

    backbone = cfg.get("backbone")
    target = str(backbone.get("_target_", "")) if backbone is not None else ""
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return  # not ours to judge here; instantiation says what is wrong with the target
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in backbone if k not in params and k not in ("name", "_target_", "num_classes")
               and not str(k).startswith("_")]
    if unknown:
        keys = ", ".join(f"backbone.{k}" for k in unknown)
        raise ConfigError(
            f"{keys}: {name} ({target}) takes no such option; its options are "
            f"{', '.join(k for k in params if k != 'num_classes')}. An experiment may set it for its own backbone "
            f"(experiment=megc2019_flows sets backbone.msff_residual for AM3F-FlowNet): with another backbone, "
            f"drop it with " + " ".join(f"'~backbone.{k}'" for k in unknown))
