"""The checks of a training config that need more of mefnet than :mod:`mefnet.schema` may
import (the trainer's strategy, the optimizer, the backbone's and the model's options,
pretraining), registered with the schema's :func:`~mefnet.schema.validator`, so that
:func:`check_train_config` (the schema plus these) checks every value once, before any work.

A value out of range is refused, never clamped: what the table prints is what ran.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mefnet.config import ConfigError
from mefnet.datasets.action_units import check_au_set
from mefnet.experiment.plan import task_name
from mefnet.preprocessing.features import Preprocessing
from mefnet.runs.identity import TASK_IMPLIED_KEYS
from mefnet.schema import TrainConfig, number, validate, validator, whole
from mefnet.training.module import MODULE_ARGS, module_class
from mefnet.training.pretrain import check_pretrain_config
from mefnet.training.task_runner import RUNNERS, TaskRunner

# Lightning strategies that keep training and prediction in this one process.
_ONE_PROCESS_STRATEGIES = ("auto", "single_device")
_PARALLEL_HINT = ("run folds in parallel instead: n_jobs=N (fold=all) or "
                  "mefnet-train -m fold=each hydra/launcher=joblib")


@validator
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


def check_train_config(cfg: DictConfig) -> TrainConfig:
    """Refuse a training config whose values cannot work, naming the key (before any work):
    :func:`mefnet.schema.validate`, which runs the checks registered here as well."""
    return validate(cfg)


def checked_run_dir(run_dir: str, *, _root_: DictConfig) -> str:
    """The ``${mefnet.checked:${experiment_dir}}`` resolver of ``hydra.run.dir``: the whole
    config checked (:func:`check_train_config`), then the run directory unchanged.

    Hydra resolves ``hydra.run.dir`` before it creates that directory and the job's log
    in it, so a refused value leaves nothing on disk. (A Hydra callback's ``on_run_start``
    would come early enough, but Hydra turns a callback's exception into a warning and
    runs the job anyway.) A multirun's jobs are checked by the LOSO sweeper instead,
    every job before the first starts."""
    check_train_config(_root_)
    return run_dir


def register_check_resolver() -> None:
    """Register ``${mefnet.checked:...}`` (:func:`checked_run_dir`); called by the entry
    modules of ``mefnet-train`` and ``mefnet-reproduce``, whose config uses it. Idempotent."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("mefnet.checked", checked_run_dir, replace=True)


@validator
def check_optimizer_and_threads(cfg: DictConfig) -> None:
    """``optimizer.lr`` above 0; ``threads_per_fold`` at least 1 (where given)."""
    lr = (cfg.get("optimizer") or {}).get("lr")
    if lr is not None:
        number("optimizer.lr", lr, 0.0)
    if cfg.get("threads_per_fold") is not None:
        whole("threads_per_fold", cfg.get("threads_per_fold"), 1)


@validator
def check_task_au_set(cfg: DictConfig) -> None:
    """``task.au_set`` of the AU tasks (``au``, ``emotion_au``): action-unit numbers, each once."""
    task = cfg.get("task") or {}
    if task.get("name") in ("au", "emotion_au"):
        try:
            check_au_set(list(task.get("au_set") or []))
        except ValueError as e:
            raise ConfigError(str(e)) from None


@validator
def check_preprocessing(cfg: DictConfig) -> None:
    """The whole ``preprocessing`` block as the features are built from it (face method and
    options, flow parameters, channel order; :meth:`Preprocessing.from_config`), before
    the experiment is recorded rather than when its maps are computed."""
    if cfg.get("preprocessing") is None:
        return
    try:
        Preprocessing.from_config(cfg.preprocessing)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


@validator
def check_pretrain(cfg: DictConfig) -> None:
    """The ``pretrain`` group's values (:func:`mefnet.training.pretrain.check_pretrain_config`)."""
    try:
        check_pretrain_config(cfg.get("pretrain"), task_name(cfg))
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


@validator
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


def _module_options(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` takes: its ``__init__``'s, and while that passes
    ``**kwargs`` on, its parents' (AUModule's ``**kwargs`` go to MERModule, which takes none)."""
    import inspect

    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names += [k for k, p in params.items() if k != "self" and k not in names
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names


def model_node(cfg: DictConfig) -> DictConfig:
    """The ``model`` group's block (conf/model/), or a :class:`ConfigError` saying what to add;
    its ``_target_`` is checked by :func:`mefnet.training.module.module_class`."""
    model = cfg.get("model")
    if model is None:
        raise ConfigError("model: the config chooses no LightningModule; add `- model: emotion` to the primary "
                          "config's defaults (conf/model/) or choose one with model=<name>")
    if not isinstance(model, DictConfig | dict):
        raise ConfigError(f"model: {model!r} is not a config block with a _target_ (choose an option of "
                          "conf/model/ with model=<name>)")
    return model


@validator
def check_model(cfg: DictConfig) -> None:
    """The ``model`` group (conf/model/): its ``_target_`` a MERModule subclass that takes
    what mefnet gives it (:data:`~mefnet.training.module.MODULE_ARGS` and the task's own),
    and no key the class does not take or that mefnet builds itself, each refusal naming
    the key."""
    model = model_node(cfg)
    cls = module_class(model.get("_target_"))
    task = RUNNERS.get(str((cfg.get("task") or {}).get("name", "emotion")), TaskRunner)
    # Another task's module (model=au under task=emotion, model=emotion under task=au) would
    # train the wrong outputs, or write them as the task's (per-AU sigmoid probabilities as
    # emotion classes): the task's own module, or a subclass of it, is required.
    modules = {name: module_class(target) for name, target in TASK_IMPLIED_KEYS["model._target_"].items()}
    own = modules[task.name]
    other = next((name for name, m in modules.items() if issubclass(cls, m) and not issubclass(own, m)), None)
    if other is not None or not issubclass(cls, own):
        what = f"is the module of task={other}" if other else "is not a subclass of the task's module"
        raise ConfigError(f"model._target_: {cls.__module__}.{cls.__qualname__} {what}; task={task.name} trains "
                          f"{own.__module__}.{own.__qualname__} or a subclass of it (model={task.name}, or drop "
                          "the model= override)")
    given = (*MODULE_ARGS, *task.module_args)
    built = [k for k in model if k in {*MODULE_ARGS, *(a for r in RUNNERS.values() for a in r.module_args)}]
    if built:
        raise ConfigError(f"{', '.join(f'model.{k}' for k in built)}: mefnet builds and gives this argument itself "
                          f"(from its own group or the task); drop it from the model config")
    options = _module_options(cls)
    missing = [a for a in given if a not in options]
    if missing:
        raise ConfigError(f"model._target_: {cls.__module__}.{cls.__qualname__} does not take "
                          f"{', '.join(missing)}, which mefnet gives the module of task={task.name}; take them "
                          "(or **kwargs) and pass them on to MERModule")
    unknown = [k for k in model if not str(k).startswith("_") and k not in options]
    if unknown:
        raise ConfigError(f"{', '.join(f'model.{k}' for k in unknown)}: {cls.__qualname__} takes no such option; "
                          f"its options are {', '.join(k for k in options if k not in given) or 'none'}")
