"""The schema of ``mefnet-train``'s top-level behaviour keys: types, ranges and choices,
checked once, each refusal naming its key.

:func:`validate` builds a :class:`TrainConfig` (dataclasses whose ``__post_init__`` check
their values) from a composed config and then runs every check registered with
:func:`validator` (the checks that need more of mefnet than this layer may import: the
trainer's strategy, the backbone's options, pretraining; ``mefnet.experiment.validate``).
``mefnet-train`` runs it before Hydra creates the run directory or its log
(``mefnet.experiment.hydra_callbacks.ValidateConfig``) and its sweeper runs it on every
job of a multirun before the first starts, so a refused value leaves nothing on disk.

The choice lists live here, as the one owner, and the modules that act on a value
(``preprocessing``, ``runs.splits``, ``data``) read them from here. A value out of range is
refused, never clamped: what the table prints is what ran. OmegaConf's own types would
check types only, and Hydra's ConfigStore would type every group's keys as well, which
the datasets' and backbones' free-form options do not allow; hence dataclasses over the
keys listed here, read out of the composed config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mefnet.config import ConfigError, check_experiment_name
from mefnet.selection_rules import find_rule, rule_names

# The selection rules (``selection=``) are objects found by name
# (:mod:`mefnet.selection_rules`: mefnet's own and a user's, entry-point group
# ``mefnet.selection``); the schema refuses a name none has, listing them. A run records
# its rule (``experiment.json``'s ``selection``, ``fold.json``'s ``selection.rule``); the
# runner, the training task, the search, the final model, the report and the benchmarks
# ask the rule object (or :func:`uses_inner_val`) rather than compare names.
INNER_VAL_METRICS = ("uf1", "uar", "accuracy", "loss")
PROTOCOLS = ("loso", "lodo", "holdout")
TASKS = ("emotion", "au", "emotion_au")
ENGINES = ("auto", "batched", "per_fold")
VECTORIZE = ("auto", "true", "false")
NORMALIZATIONS = ("minmax", "none", "standardize")
TRAIN_ORDERS = ("index", "class")
AU_NO_AU_CLIPS = ("drop", "keep")
AU_THRESHOLDS = ("fixed", "inner_val")
# numpy's and Lightning's seeds are unsigned 32-bit numbers.
SEED_MAX = 2**32 - 1
# Input maps larger than this take gigabytes per clip: refused before the flow cache is filled.
MAX_SIZE = 1024


def uses_inner_val(rule: object) -> bool:
    """Whether the selection rule ``rule`` (``cfg.selection`` or a fold record's
    ``selection.rule``) chooses on inner-validation subjects (False for an unknown name)."""
    found = find_rule(rule)
    return found is not None and found.inner_val


def whole(key: str, value: Any, low: int, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int in ``[low, high]``, or a :class:`ConfigError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            value = int(float(value))
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: {value!r} is not a whole number{hint}") from None
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{key}: {value} is out of range; it must be {bound}{hint}")
    return value


def number(key: str, value: Any, low: float, high: float | None = None, open_low: bool = True,
           open_high: bool = True) -> float:
    """``value`` as a finite float above ``low`` (and below ``high``), or a :class:`ConfigError`."""
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


def choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices``, or a :class:`ConfigError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def flag(key: str, value: Any) -> bool:
    """``value`` when it is ``true`` or ``false``, or a :class:`ConfigError`."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is not true or false")
    return value


def _node(cfg: Any, key: str) -> Any:
    """``cfg[key]`` for a dotted key; None where a part is absent."""
    node = cfg
    for part in key.split("."):
        if node is None or isinstance(node, str | bytes) or not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node


def _given(cfg: Any, key: str, default: Any) -> Any:
    value = _node(cfg, key)
    return default if value is None else value


@dataclass
class InnerVal:
    """``inner_val``: how ``selection=inner_val`` picks the epoch (conf/train.yaml)."""

    val_fraction: float = 0.2
    metric: str = "uf1"
    smooth: int = 5
    every_n_epochs: int = 5
    min_epochs: int = 10
    refit: bool = True
    max_epochs: int | None = None  # the trainer's, bounding min_epochs

    def __post_init__(self) -> None:
        self.val_fraction = number("inner_val.val_fraction", self.val_fraction, 0.0, 1.0)
        self.smooth = whole("inner_val.smooth", self.smooth, 1, hint=" (evaluations in the moving average)")
        self.every_n_epochs = whole("inner_val.every_n_epochs", self.every_n_epochs, 1,
                                    hint=" (the last epoch is always evaluated too)")
        self.min_epochs = whole("inner_val.min_epochs", self.min_epochs, 1, self.max_epochs,
                                hint=" (and at most trainer.max_epochs, or no epoch qualifies)")
        self.metric = choice("inner_val.metric", self.metric, INNER_VAL_METRICS)
        self.refit = flag("inner_val.refit", self.refit)


@dataclass
class Protocol:
    """``protocol``: which clips train and test in each fold (conf/protocol/)."""

    name: str = "loso"

    def __post_init__(self) -> None:
        self.name = choice("protocol", self.name, PROTOCOLS)


@dataclass
class Task:
    """``task``: what is predicted (conf/task/); the AU task's own options."""

    name: str = "emotion"
    no_au_clips: str = "drop"
    threshold: str = "fixed"
    threshold_value: float = 0.5
    au_weight: float = 1.0

    def __post_init__(self) -> None:
        self.name = choice("task", self.name, TASKS)
        if self.name == "emotion_au":
            self.au_weight = number("task.au_weight", self.au_weight, 0.0, open_low=False)
            self.threshold_value = number("task.threshold_value", self.threshold_value, 0.0, 1.0)
        if self.name == "au":
            self.no_au_clips = choice("task.no_au_clips", self.no_au_clips, AU_NO_AU_CLIPS)
            self.threshold = choice("task.threshold", self.threshold, AU_THRESHOLDS)
            self.threshold_value = number("task.threshold_value", self.threshold_value, 0.0, 1.0)


@dataclass
class Data:
    """``data``: the training batches."""

    batch_size: int = 256
    shuffle: bool = True
    order: str = "index"

    def __post_init__(self) -> None:
        self.batch_size = whole("data.batch_size", self.batch_size, 1)
        self.shuffle = flag("data.shuffle", self.shuffle)
        self.order = choice("data.order", self.order, TRAIN_ORDERS)


@dataclass
class Preprocessing:
    """``preprocessing``: the input maps' size and scaling, and the cache's processes."""

    size: int = 28
    normalize: str = "minmax"
    n_jobs: int = 2
    scale: float = 1.0

    def __post_init__(self) -> None:
        self.size = whole("preprocessing.size", self.size, 1, MAX_SIZE, hint=" (pixels per side of the input maps)")
        self.normalize = choice("preprocessing.normalize", self.normalize, NORMALIZATIONS)
        self.n_jobs = whole("preprocessing.n_jobs", self.n_jobs, 1, hint=" (processes filling the flow cache)")
        self.scale = number("preprocessing.scale", self.scale, 0.0)


@dataclass
class TrainConfig:
    """The top-level behaviour keys of ``mefnet-train`` (conf/train.yaml), checked."""

    experiment_name: str
    seed: int = 42
    fold: str = "all"
    n_jobs: int = 1
    engine: str = "auto"
    vectorize: str = "auto"
    max_epochs: int = 1
    selection: str = "fixed_epochs"
    inner_val: InnerVal | None = None
    protocol: Protocol = field(default_factory=Protocol)
    task: Task = field(default_factory=Task)
    data: Data = field(default_factory=Data)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def __post_init__(self) -> None:
        self.experiment_name = check_experiment_name(self.experiment_name)
        self.seed = whole("seed", self.seed, 0, SEED_MAX, hint=" (numpy's and torch's seeds are 32-bit)")
        if isinstance(self.fold, bool) or not isinstance(self.fold, str | int) or self.fold == "":
            raise ConfigError(f"fold: {self.fold!r} is not a subject, all, each or none")
        self.fold = str(self.fold)
        if self.fold == "each":
            raise ConfigError(
                "fold=each expands to one job per subject and needs a multirun: "
                "mefnet-train -m fold=each (add hydra/launcher=joblib to run the folds in parallel)"
            )
        self.n_jobs = whole("n_jobs", self.n_jobs, 1, hint=" (processes running folds at once)")
        self.engine = choice("engine", self.engine, ENGINES)
        self.vectorize = choice("vectorize", str(self.vectorize).lower() if isinstance(self.vectorize, bool)
                                else self.vectorize, VECTORIZE)
        self.max_epochs = whole("trainer.max_epochs", self.max_epochs, 1, hint=" (epochs to train)")
        self.selection = choice("selection", self.selection, rule_names())
        if uses_inner_val(self.selection) and self.inner_val is None:
            raise ConfigError(f"selection={self.selection} needs the inner_val block "
                              "(val_fraction, metric, smooth, every_n_epochs, min_epochs, refit)")

    @classmethod
    def from_config(cls, cfg: Any) -> TrainConfig:
        """The schema's keys read out of a composed config (a DictConfig or a mapping); the
        other keys are left to the checks registered with :func:`validator`."""
        max_epochs = whole("trainer.max_epochs", _given(cfg, "trainer.max_epochs", 1), 1, hint=" (epochs to train)")
        selection = _node(cfg, "selection")
        inner_val = None
        if uses_inner_val(selection) and _node(cfg, "inner_val") is not None:
            inner_val = InnerVal(**{k: _given(cfg, f"inner_val.{k}", d) for k, d in _defaults(InnerVal).items()},
                                 max_epochs=max_epochs)
        return cls(
            experiment_name=_node(cfg, "experiment_name"),
            seed=_given(cfg, "seed", 42),
            fold=_given(cfg, "fold", "all"),
            n_jobs=_given(cfg, "n_jobs", 1),
            engine=_given(cfg, "engine", "auto"),
            vectorize=_given(cfg, "vectorize", "auto"),
            max_epochs=max_epochs,
            selection=selection,
            inner_val=inner_val,
            protocol=Protocol(name=_given(cfg, "protocol.name", "loso")),
            task=Task(**{k: _given(cfg, f"task.{k}", d) for k, d in _defaults(Task).items()}),
            data=Data(**{k: _given(cfg, f"data.{k}", d) for k, d in _defaults(Data).items()}),
            preprocessing=Preprocessing(**{k: _given(cfg, f"preprocessing.{k}", d)
                                           for k, d in _defaults(Preprocessing).items()}),
        )


def _defaults(cls: type) -> dict[str, Any]:
    return {k: v.default for k, v in cls.__dataclass_fields__.items() if k != "max_epochs"}


_VALIDATORS: list[Callable[[Any], None]] = []


def validator(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Register ``check(cfg)`` to run after the schema in :func:`validate` (a decorator): the
    one place a module above this layer adds a check of its keys. Idempotent."""
    if check not in _VALIDATORS:
        _VALIDATORS.append(check)
    return check


def validate(cfg: Any) -> TrainConfig:
    """Check a composed training config: the schema's keys, then every registered check.

    Raises :class:`ConfigError` naming the first refused key; returns the checked values."""
    checked = TrainConfig.from_config(cfg)
    for check in list(_VALIDATORS):
        check(cfg)
    return checked
