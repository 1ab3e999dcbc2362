"""The config schema (mefnet.schema): each top-level behaviour key refused with a wrong
type and with an out-of-range value, naming the key; and a refused value leaves the
output folder exactly as it was, through mefnet-train's console entry point."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mefnet import schema
from mefnet.config import ConfigError, compose
from tests.helpers import TINY_SYNTHETIC

BASE = {
    "experiment_name": "checked",
    "seed": 42,
    "fold": "all",
    "n_jobs": 1,
    "engine": "auto",
    "vectorize": "auto",
    "trainer": {"max_epochs": 3},
    "selection": "inner_val",
    "inner_val": {"val_fraction": 0.2, "metric": "uf1", "smooth": 1, "every_n_epochs": 1, "min_epochs": 1,
                  "refit": True},
    "protocol": {"name": "loso"},
    "task": {"name": "emotion"},
    "data": {"batch_size": 8},
    "preprocessing": {"size": 28, "normalize": "minmax", "n_jobs": 1},
}


def _with(key: str, value) -> dict:
    cfg = copy.deepcopy(BASE)
    node = cfg
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return cfg


# key, a value of the wrong type, an out-of-range (or unknown) value, the start of each message
CASES = [
    ("selection", 3, "best_epoch", "selection: "),
    ("inner_val.val_fraction", "a fifth", 1.5, "inner_val.val_fraction: "),
    ("inner_val.metric", 1, "f1", "inner_val.metric: "),
    ("inner_val.smooth", "five", 0, "inner_val.smooth: "),
    ("inner_val.every_n_epochs", 2.5, 0, "inner_val.every_n_epochs: "),
    ("inner_val.min_epochs", "ten", 9, "inner_val.min_epochs: "),
    ("inner_val.refit", "yes", None, "inner_val.refit: "),
    ("protocol.name", 7, "kfold", "protocol: "),
    ("task.name", 2, "detection", "task: "),
    ("data.batch_size", "many", 0, "data.batch_size: "),
    ("data.shuffle", "sometimes", None, "data.shuffle: "),
    ("data.order", 1, "random", "data.order: "),
    ("engine", 1, "foo", "engine: "),
    ("preprocessing.size", "big", 20000, "preprocessing.size: "),
    ("preprocessing.normalize", 1, "foo", "preprocessing.normalize: "),
    ("preprocessing.n_jobs", "two", 0, "preprocessing.n_jobs: "),
    ("preprocessing.scale", "bright", -1.0, "preprocessing.scale: "),
    ("seed", "abc", -1, "seed: "),
    ("experiment_name", ["a"], "../outside", "experiment_name: "),
    ("n_jobs", "two", 0, "n_jobs: "),
    ("vectorize", 3, "sometimes", "vectorize: "),
    ("fold", [1, 2], "each", "fold"),
    ("trainer.max_epochs", "ten", 0, "trainer.max_epochs: "),
]


def test_the_base_config_passes():
    checked = schema.TrainConfig.from_config(BASE)
    assert (checked.seed, checked.inner_val.metric, checked.preprocessing.size) == (42, "uf1", 28)


# Flags (inner_val.refit, data.shuffle) have a type and no range.
REFUSALS = [(key, value, message) for key, wrong_type, out_of_range, message in CASES
            for value in (wrong_type, out_of_range) if value is not None]


@pytest.mark.parametrize("key, value, message", REFUSALS, ids=[f"{k}={v!r}" for k, v, _ in REFUSALS])
def test_each_key_is_refused_naming_it(key, value, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        schema.TrainConfig.from_config(_with(key, value))


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_the_seed_range_is_numpys(seed):
    assert schema.TrainConfig.from_config(_with("seed", seed)).seed == seed


def test_the_au_task_keys_are_checked_only_for_the_au_task():
    cfg = _with("task", {"name": "au", "threshold": "best"})
    with pytest.raises(ConfigError, match="^task.threshold: 'best' is not one of fixed, inner_val"):
        schema.TrainConfig.from_config(cfg)
    assert schema.TrainConfig.from_config(_with("task", {"name": "emotion", "threshold": "best"}))


def test_a_rule_registered_in_the_process_is_a_choice_the_schema_and_uses_inner_val_ask(monkeypatch, caplog):
    from mefnet import selection_rules

    class Half(selection_rules.SelectionRule):
        name = "half"

    monkeypatch.setattr(selection_rules, "_registered", {})
    assert selection_rules.register_rule(Half) is Half
    assert selection_rules.rule_names() == ("fixed_epochs", "inner_val", "half")
    assert schema.TrainConfig.from_config(_with("selection", "half")).selection == "half"
    assert not schema.uses_inner_val("half") and schema.uses_inner_val("inner_val")
    assert not schema.uses_inner_val("nope") and not schema.uses_inner_val(None)
    with pytest.raises(ConfigError, match="^selection: 'nope' is not one of fixed_epochs, inner_val, half$"):
        schema.TrainConfig.from_config(_with("selection", "nope"))
    with pytest.raises(ValueError, match="'nope' is not one of fixed_epochs, inner_val, half .*mefnet.selection"):
        selection_rules.rule_of("nope")
    with pytest.raises(ValueError, match="'inner_val' is a built-in selection rule"):
        selection_rules.register_rule(type("Again", (selection_rules.SelectionRule,), {"name": "inner_val"}))
    with pytest.raises(TypeError, match="not a SelectionRule"):
        selection_rules.register_rule(object)

    # A rule that holds out inner-validation subjects needs the inner_val block, saying so by its name.
    class Held(selection_rules.SelectionRule):
        name = "held"
        inner_val = True

    selection_rules.register_rule(Held())
    cfg = _with("selection", "held")
    del cfg["inner_val"]
    with pytest.raises(ConfigError, match="^selection=held needs the inner_val block"):
        schema.TrainConfig.from_config(cfg)
    assert schema.TrainConfig.from_config(_with("selection", "held")).inner_val.metric == "uf1"


def test_a_broken_or_misnamed_rule_entry_point_is_skipped_with_a_warning(monkeypatch, caplog):
    from importlib.metadata import EntryPoint

    from mefnet import selection_rules

    eps = [EntryPoint("broken", "nosuchpkg.rules:Rule", selection_rules.SELECTION_GROUP),
           EntryPoint("misnamed", "mefnet.selection_rules:InnerVal", selection_rules.SELECTION_GROUP)]
    monkeypatch.setattr(selection_rules, "_entry_points", lambda: eps)
    assert selection_rules.rule_names() == ("fixed_epochs", "inner_val", "broken", "misnamed")
    with caplog.at_level("WARNING", logger="mefnet"):
        assert selection_rules.find_rule("broken") is None and selection_rules.find_rule("misnamed") is None
    assert "entry point broken = nosuchpkg.rules:Rule (group mefnet.selection) could not be loaded" in caplog.text
    assert "entry point misnamed (group mefnet.selection) names the rule 'inner_val'" in caplog.text


def test_a_registered_check_runs_after_the_schema():
    seen = []

    def check(cfg) -> None:
        seen.append(cfg["seed"])
        if cfg["seed"] == 7:
            raise ConfigError("seed: 7 is unlucky")

    # Only this check: the ones mefnet.experiment.validate registers when another test has
    # imported it expect a whole composed config, not this test's minimal one.
    registered = list(schema._VALIDATORS)
    schema._VALIDATORS.clear()
    schema.validator(check)
    try:
        schema.validate(BASE)
        with pytest.raises(ConfigError, match="seed: 7 is unlucky"):
            schema.validate(_with("seed", 7))
        with pytest.raises(ConfigError, match="seed: -1 is out of range"):
            schema.validate(_with("seed", -1))  # the schema refuses first
        assert seen == [42, 7]
    finally:
        schema._VALIDATORS[:] = registered


def test_the_composed_default_config_passes_the_full_check():
    from mefnet.experiment.validate import check_train_config

    checked = check_train_config(compose(TINY_SYNTHETIC))
    assert checked.selection == "fixed_epochs" and checked.max_epochs == 3


# ------------------------------------------------------------- nothing written by a refused run

REFUSED = [
    ("seed=-1", "seed: -1 is out of range"),
    ("seed=99999999999", "seed: 99999999999 is out of range"),
    ("seed=abc", "seed: 'abc' is not a whole number"),
    ("engine=foo", "engine: 'foo' is not one of"),
    ("preprocessing.normalize=foo", "preprocessing.normalize: 'foo' is not one of"),
    ("preprocessing.size=20000", "preprocessing.size: 20000 is out of range"),
    ("selection=best", "selection: 'best' is not one of"),
    ("protocol.name=kfold", "protocol: 'kfold' is not one of"),
    ("vectorize=sometimes", "vectorize: 'sometimes' is not one of"),
    ("data.batch_size=0", "data.batch_size: 0 is out of range"),
    ("n_jobs=0", "n_jobs: 0 is out of range"),
    ("selection=inner_val inner_val.min_epochs=1 inner_val.metric=f1", "inner_val.metric: 'f1' is not one of"),
    ("trainer.max_epochs=0", "trainer.max_epochs: 0 is out of range"),
    ("optimizer.lr=0", "optimizer.lr: 0.0 is out of range"),
    ("fold=each", "fold=each expands to one job per subject"),
    ("+preprocessing.channel_order=bgr", "preprocessing.channel_order: 'bgr' is not one of"),
    ("preprocessing.face=dlib", "preprocessing.face: 'dlib' is not one of"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under ``root``: size and bytes (folders: -1)."""
    return {str(p.relative_to(root)): ((p.stat().st_size, p.read_bytes()) if p.is_file() else (-1, b""))
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def output_dir(tmp_path, monkeypatch) -> Path:
    """MEFNET_OUTPUT_DIR in tmp holding an earlier experiment's files, started from tmp."""
    out = tmp_path / "outputs"
    earlier = out / "synthetic-ststnet-cross_entropy" / "seed_42"
    earlier.mkdir(parents=True)
    (earlier / "experiment.json").write_text('{"earlier": true}\n')
    (out / "notes.txt").write_text("the user's own file\n")
    monkeypatch.setenv("MEFNET_OUTPUT_DIR", str(out))
    monkeypatch.setenv("MEFNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("overrides, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_refused_value_leaves_the_output_folder_as_it_was(output_dir, monkeypatch, capsys, overrides, message):
    from mefnet.experiment.train import main

    before = _snapshot(output_dir)
    monkeypatch.setattr(sys, "argv", ["mefnet-train", *TINY_SYNTHETIC, *overrides.split()])
    with pytest.raises(SystemExit) as e:
        main()
    # sys.exit(text): the interpreter prints the text on stderr and exits with status 1
    assert isinstance(e.value.code, str), e.value.code
    first, *rest = e.value.code.splitlines()
    assert first.startswith("mefnet-train: ") and message in first, first
    assert rest == ["(HYDRA_FULL_ERROR=1 or --debug shows the traceback)"]
    assert "Traceback" not in capsys.readouterr().err
    assert _snapshot(output_dir) == before, "a refused run wrote or changed files"


def _train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mefnet.experiment.train", *args, *TINY_SYNTHETIC], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


@pytest.mark.parametrize("args, message", [
    (["seed=-1"], "mefnet-train: seed: -1 is out of range; it must be between 0 and 4294967295"),
    (["-m", "seed=1,99999999999"], "mefnet-train: seed: 99999999999 is out of range"),
    (["-m", "fold=each", "engine=foo"], "mefnet-train: engine: 'foo' is not one of auto, batched, per_fold"),
], ids=["single", "multirun", "multirun-fold-each"])
@pytest.mark.command
def test_the_command_refuses_before_writing(output_dir, args, message):
    before = _snapshot(output_dir)
    out = _train(output_dir, *args)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(message), out.stderr
    assert "Traceback" not in out.stderr and "Warning" not in out.stderr, out.stderr
    assert _snapshot(output_dir) == before


def test_mefnet_reproduce_refuses_before_writing(output_dir):
    from mefnet.experiment.reproduce import main

    before = _snapshot(output_dir)
    with pytest.raises(SystemExit) as e:
        main(["--set", "synthetic", "seed=-1"])
    assert str(e.value.code).startswith("reproduce-table: seed: -1 is out of range"), e.value.code
    assert _snapshot(output_dir) == before
