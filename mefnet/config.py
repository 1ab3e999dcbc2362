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


def _recipe_name(name, dataset, recipe_dataset):
    """``${mefnet.recipe:<name>,${dataset.name},<the recipe's dataset>}``: a recipe's run name,
    prefixed with the dataset it ran on when that is not the one the recipe is for (so a
    recipe run on other data is never named as if it were on the recipe's)."""
    return str(name) if str(dataset) == str(recipe_dataset) else f"{dataset}-{name}"


def register_resolvers() -> None:
    """``${mefnet.name:...}`` (a checked experiment name), ``${mefnet_hash:text}`` (a short
    stable hash naming each recipe-search trial by its overrides, conf/hparams_search/) and
    ``${mefnet.recipe:...}`` (a recipe's run name naming other data, :func:`_recipe_name`)."""
    from omegaconf import OmegaConf

    from mefnet.experiment.search import params_hash

    OmegaConf.register_new_resolver("mefnet.name", _plain_name, replace=True)
    OmegaConf.register_new_resolver("mefnet_hash", params_hash, replace=True)
    OmegaConf.register_new_resolver("mefnet.recipe", _recipe_name, replace=True)


register_resolvers()


def compose(overrides: list[str] | None = None, config_name: str = "train"):
    """Compose the config as ``mefnet-train`` would (for notebooks and tests), resolved.

    A value that reads the running job's Hydra config (``${hydra:...}``: the recipe
    search's trial names) reads the composed ``hydra`` node instead; Hydra's own
    ``HydraConfig`` is left alone.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from mefnet.cli import open_map_overrides

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=open_map_overrides(list(overrides or [])),
                            return_hydra_config=True)

    def local(value):
        if isinstance(value, dict):
            return {k: local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [local(v) for v in value]
        return value.replace("${hydra:", "${hydra.") if isinstance(value, str) else value

    container = OmegaConf.to_container(cfg, resolve=False)
    full = OmegaConf.create({k: (v if k == "hydra" else local(v)) for k, v in container.items()})
    out = {}
    for key in container:
        if key != "hydra":
            value = full[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value
    return OmegaConf.create(out)


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
