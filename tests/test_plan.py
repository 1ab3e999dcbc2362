"""The config is read in the experiment layer (mefnet.experiment.plan) and the layers below
take objects: no DictConfig and no ``cfg`` parameter below experiment/ outside the
exceptions documented in docs/architecture.md ("Config below experiment/")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mefnet
from mefnet.config import compose
from mefnet.experiment.plan import pretrain_spec, split_of, task_of, task_runner, tracking_of
from mefnet.tasks import EmotionTask
from mefnet.tasks.au import AUTask
from mefnet.tasks.emotion_au import EmotionAUTask
from mefnet.training.pretrain import SHAPING_KEYS

BELOW_EXPERIMENT = ("training", "runs", "data", "report", "inference", "preprocessing", "tasks", "datasets",
                    "models", "losses")
# (module, function) allowed to take the composed config, and the modules allowed to import
# DictConfig for it: each is listed, with its reason, in docs/architecture.md.
CFG_ALLOWED = {("mefnet/preprocessing/cache_cli.py", "_main")}
DICTCONFIG_ALLOWED = {"mefnet/preprocessing/cache_cli.py"}
ROOT = Path(mefnet.__file__).parent.parent


def config_uses(path: Path, rel: str | None = None) -> list[str]:
    """Where ``path`` (``rel``: its path in the repository) imports or names DictConfig, or
    has a function with a ``cfg`` parameter."""
    rel = rel or path.relative_to(ROOT).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
        if isinstance(node, ast.ImportFrom) and any(a.name == "DictConfig" for a in node.names):
            found.append(f"{rel}:{node.lineno}: imports DictConfig")
        elif (isinstance(node, ast.Attribute) and node.attr == "DictConfig") or \
                (isinstance(node, ast.Name) and node.id == "DictConfig"):
            found.append(f"{rel}:{node.lineno}: names DictConfig")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
            name = getattr(node, "name", "<lambda>")
            if "cfg" in names and (rel, name) not in CFG_ALLOWED:
                found.append(f"{rel}:{node.lineno}: {name} takes a cfg parameter")
    if rel in DICTCONFIG_ALLOWED:
        found = [f for f in found if "DictConfig" not in f]
    return found


def test_no_config_below_the_experiment_layer():
    files = sorted(p for pkg in BELOW_EXPERIMENT for p in (ROOT / "mefnet" / pkg).rglob("*.py"))
    assert len(files) > 50
    problems = [p for f in files for p in config_uses(f)]
    assert not problems, "the config is read in mefnet/experiment/ (plan.py):\n" + "\n".join(problems)


def test_the_check_finds_a_config_taken_below_experiment(tmp_path):
    """The check itself: each way of taking the config is found."""
    bad = tmp_path / "probe.py"
    bad.write_text("import omegaconf\nfrom omegaconf import DictConfig\n\n\ndef f(cfg, x: omegaconf.DictConfig):\n"
                   "    return cfg\n\n\ng = lambda *, cfg: cfg\n")
    found = sorted(f.split(": ", 1)[1] for f in config_uses(bad, "mefnet/training/probe.py"))
    assert found == ["<lambda> takes a cfg parameter", "f takes a cfg parameter", "imports DictConfig",
                     "names DictConfig"]
    # An entry point's exception holds for its own module only.
    assert "_main takes a cfg parameter" in " ".join(
        config_uses(_write(tmp_path / "entry.py", "def _main(cfg):\n    pass\n"), "mefnet/training/entry.py"))
    assert not config_uses(_write(tmp_path / "cli.py", "from omegaconf import DictConfig\n\n\n"
                                  "def _main(cfg: DictConfig):\n    pass\n"), "mefnet/preprocessing/cache_cli.py")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_documented_exceptions_are_documented():
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("### Config below experiment/", 1)[1].split("\n## ", 1)[0]
    for path, function in CFG_ALLOWED:
        assert path.removeprefix("mefnet/").removesuffix(".py").replace("/", ".") in section
        assert function in section


def test_the_plan_turns_the_config_into_objects():
    assert split_of(compose([])).name == "loso"
    holdout = split_of(compose(["protocol=holdout", "protocol.train=[a]", "protocol.test=[b]"]))
    assert (holdout.name, holdout.train, holdout.test) == ("holdout", ("a",), ("b",))
    assert isinstance(task_of(compose([])), EmotionTask)
    au = task_of(compose(["task=au", "task.threshold_value=0.4"]))
    assert isinstance(au, AUTask) and au.name == "au" and au.threshold_value == 0.4
    assert isinstance(task_of(compose(["task=emotion_au"])), EmotionAUTask)


def test_the_tracking_spec_is_the_wandb_loggers():
    assert tracking_of(compose([])) is None
    cfg = compose(["logger=wandb", "experiment_name=exp", "seed=3"])
    tracking = tracking_of(cfg)
    assert (tracking.group, tracking.project, tracking.offline) == ("exp/seed_3", cfg.logger.wandb.project, True)
    assert tracking.config["seed"] == 3 and tracking.config["experiment_name"] == "exp"


def test_the_pretrain_spec_is_read_once_and_checked(tmp_path):
    assert pretrain_spec(compose([])) is None and pretrain_spec(compose(["pretrain=none"])) is None
    cfg = compose(["pretrain=synthetic", "seed=7", f"paths.cache_dir={tmp_path}"])
    spec = pretrain_spec(cfg)
    assert (spec.seed, spec.epochs, spec.cache_dir) == (7, cfg.pretrain.epochs, str(tmp_path))
    assert set(spec.shaping) == set(SHAPING_KEYS) and spec.shaping["data.batch_size"] == cfg.data.batch_size
    with pytest.raises(ValueError, match="only task=emotion"):
        pretrain_spec(compose(["pretrain=synthetic", "task=au"]))


def test_the_task_runner_gets_the_configured_loss():
    from mefnet.datasets.clip_index import ClipIndex

    runner = task_runner(compose(["loss=focal"]), ClipIndex([], ["a", "b", "c"]))

    class Counts:
        def train_class_counts(self):
            return [3, 3, 3]

    assert type(runner.loss(Counts())).__name__ == "FocalLoss"
