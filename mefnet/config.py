"""Where mefnet's Hydra configs are, and composing them outside the command line."""

from __future__ import annotations

from pathlib import Path

import mefnet


def _find_config_dir() -> str:
    # An installed wheel ships conf/ as the package data mefnet/conf; a source checkout
    # (editable install) has it beside the package.
    pkg = Path(mefnet.__file__).resolve().parent
    for candidate in (pkg / "conf", pkg.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"mefnet's configs (conf/train.yaml) were not found next to {pkg}; reinstall mefnet")


CONFIG_DIR = _find_config_dir()


def _plain_name(name):
    """``${mefnet.name:${experiment_name}}``: the name, refused unless it is a plain folder
    name; resolved by Hydra before it creates the run directory, so a bad name writes nothing."""
    from mefnet.experiment.validate import check_experiment_name

    return check_experiment_name(name)


def register_resolvers() -> None:
    """``${mefnet.name:...}`` (a checked experiment name) and ``${mefnet_hash:text}`` (a
    short stable hash naming each recipe-search trial by its overrides, conf/hparams_search/)."""
    from omegaconf import OmegaConf

    from mefnet.experiment.search import params_hash

    OmegaConf.register_new_resolver("mefnet.name", _plain_name, replace=True)
    OmegaConf.register_new_resolver("mefnet_hash", params_hash, replace=True)


register_resolvers()


def compose(overrides: list[str] | None = None, config_name: str = "train"):
    """Compose the config as ``mefnet-train`` would (for notebooks and tests), resolved.

    Nothing of a running Hydra job is involved: a value that reads ``${hydra:...}`` (the
    recipe search's trial names, known only inside a job of the search) cannot be composed
    here and is refused with its key.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides or [])
    try:
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except InterpolationResolutionError as e:
        if "HydraConfig was not set" not in str(e):
            raise
        raise ValueError(f"compose: '{e.full_key}' reads ${{hydra:...}}, which only a running Hydra job "
                         "has; run it with mefnet-train") from None


def instantiate_option(node, **kwargs):
    """Instantiate a backbone or loss config (``conf/backbone``, ``conf/loss``).

    Their ``name`` key names the option (``experiment_name`` is built from it) and is not
    an argument of the class the config targets.
    """
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    items = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    spec = {k: v for k, v in items.items() if k != "name"}
    return instantiate(spec, **kwargs)
