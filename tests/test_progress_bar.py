"""Training draws a progress bar on a terminal only, and the bar changes no prediction."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import RichProgressBar

from mefnet.config import compose
from mefnet.experiment.fitting import build_trainer
from mefnet.experiment.train import run
from mefnet.training.progress_bar import ENV, on_terminal
from tests.helpers import tiny_overrides


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _on_a_terminal(monkeypatch) -> None:
    """stdout a terminal (set in the test itself: pytest's capture replaces sys.stdout
    again between a fixture's setup and the test)."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stdout", _Terminal())


def test_a_bar_on_a_terminal_and_none_under_ci_in_a_file_or_when_switched_off(monkeypatch):
    _on_a_terminal(monkeypatch)
    assert on_terminal()
    monkeypatch.setenv("CI", "true")
    assert not on_terminal()
    monkeypatch.setenv(ENV, "1")
    assert on_terminal()  # asked for
    monkeypatch.delenv("CI")
    monkeypatch.setenv(ENV, "0")
    assert not on_terminal()
    monkeypatch.delenv(ENV)
    monkeypatch.setattr("sys.stdout", io.StringIO())  # a log file, a pipe
    assert not on_terminal()


def test_the_trainer_gets_the_bar_only_on_a_terminal(monkeypatch, tmp_path):
    _on_a_terminal(monkeypatch)
    cfg = compose(tiny_overrides(tmp_path, "bar"))
    trainer = build_trainer(cfg, tmp_path, 1, [], [])
    assert isinstance(trainer.progress_bar_callback, RichProgressBar)
    monkeypatch.setenv("CI", "1")
    assert build_trainer(cfg, tmp_path, 1, [], []).progress_bar_callback is None


def _predictions(exp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(exp)): p.read_bytes() for p in sorted(exp.glob("folds/*/*/predictions.csv"))}


@pytest.mark.parametrize("engine", ["per_fold", "batched"])
def test_the_bar_changes_no_prediction(engine, monkeypatch, tmp_path):
    got = {}
    for shown in ("1", "0"):
        monkeypatch.setenv(ENV, shown)
        cfg = compose(tiny_overrides(tmp_path / shown, "bar", f"engine={engine}", "trainer.max_epochs=2"))
        run(cfg)
        got[shown] = _predictions(Path(cfg.experiment_dir))
    assert got["1"] and got["1"] == got["0"]
