"""Where mefnet's Hydra configs are, composing them outside the command line, and the
config's own resolvers and error type.

The floor of every entry point: it imports nothing else of mefnet. The resolvers are registered by the entry points
(:func:`register_resolvers`: ``mefnet-train``'s module, ``mefnet-cache``, :func:`compose`),
not when this module is imported.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from mefnet.utils.cli import open_map_overrides

# A plain folder name: letters, digits and . _ - + = , @ (not "." or ".."), so that
# ``<paths.output_dir>/<experiment_name>`` stays inside the output folder.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_\-+=,@.]+$")


MAX_NAME_LENGTH = 128


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what it accepts."""


def _find_config_dir() -> str:
    # An installed wheel ships conf/ as the package data mefnet/conf; a source checkout
    # (editable install) has it beside the package.
    pkg = Path(__file__).resolve().parent
    for candidate in (pkg / "conf", pkg.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"mefnet's configs (conf/train.yaml) were not found next to {pkg}; reinstall mefnet")


CONFIG_DIR = _find_config_dir()


def check_experiment_name(name) -> str:
    """``experiment_name`` must be a plain folder name: no path separators, not empty, not ``..``.

    Also the ``${mefnet.name:${experiment_name}}`` resolver: resolved by Hydra before it
    creates the run directory, so a bad name writes nothing."""
    name = "" if name is None else str(name)
    if not name or name in (".", "..") or not _PLAIN_NAME.match(name):
        raise ConfigError(
            f"experiment_name: {name!r} is not a plain name; use letters, digits and . _ - + = , @ "
            "(no path separators, not empty, not '..'): it names a folder inside paths.output_dir"
        )
    if len(name) > MAX_NAME_LENGTH:  # folder names stop at 255 bytes; and a table row must stay legible
        raise ConfigError(
            f"experiment_name: {name[:40]!r}... is {len(name)} characters long; use at most "
            f"{MAX_NAME_LENGTH}: it names a folder inside paths.output_dir"
        )
    return name


def params_hash(text: str) -> str:
    """Short stable hash naming a trial by its overrides (the ``mefnet_hash`` resolver)."""
    return hashlib.sha256(str(text).encode()).hexdigest()[:10]


def _recipe_name(name, dataset, recipe_dataset):
    """``${mefnet.recipe:<name>,${dataset.name},<the recipe's dataset>}``: a recipe's run name,
    prefixed with the dataset it ran on when that is not the one the recipe is for (so a
    recipe run on other data is never named as if it were on the recipe's)."""
    return str(name) if str(dataset) == str(recipe_dataset) else f"{dataset}-{name}"


def register_resolvers() -> None:
    """``${mefnet.name:...}`` (a checked experiment name), ``${mefnet_hash:text}`` (a short
    stable hash naming each recipe-search trial by its overrides, conf/hparams_search/) and
    ``${mefnet.recipe:...}`` (a recipe's run name naming other data, :func:`_recipe_name`).

    Called by each entry point before it composes a config; idempotent."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("mefnet.name", check_experiment_name, replace=True)
    OmegaConf.register_new_resolver("mefnet_hash", params_hash, replace=True)
    OmegaConf.register_new_resolver("mefnet.recipe", _recipe_name, replace=True)


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

    register_resolvers()
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


def absolute_paths(cfg):
    """Resolve every interpolation and make paths absolute (fold workers start elsewhere)."""
    from omegaconf import OmegaConf

    resolved = OmegaConf.to_container(cfg, resolve=True)
    for key in ("output_dir", "data_dir", "cache_dir"):
        resolved["paths"][key] = str(Path(resolved["paths"][key]).expanduser().resolve())
    resolved["experiment_dir"] = str(Path(resolved["experiment_dir"]).expanduser().resolve())
    resolved["preprocessing"]["cache_dir"] = str(Path(resolved["preprocessing"]["cache_dir"]).resolve())
    return OmegaConf.create(resolved)


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
