"""Console scripts work from any directory; the configs ship inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.helpers import TINY_SYNTHETIC

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.skip(f"{name} is not installed (pip install -e .)")
        return found
    return str(path)


def test_mefnet_train_and_table_run_from_a_temporary_directory(tmp_path):
    env = {**os.environ, "MEFNET_OUTPUT_DIR": "out", "MEFNET_DATA_DIR": "data"}
    run = subprocess.run(
        [_script("mefnet-train"), *TINY_SYNTHETIC, "experiment_name=cli"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    exp = tmp_path / "out" / "cli" / "seed_42"
    assert (exp / "table.md").is_file() and len(list(exp.glob("folds/*/*/predictions.csv"))) == 4
    table = subprocess.run([_script("mefnet-table"), str(exp), "--out", "t"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "| cli | all | 18 | 4 |" in table.stdout
    assert (tmp_path / "t" / "table.csv").read_text().startswith("experiment,part,clips,folds,uf1,uar")


def test_mefnet_table_names_what_is_missing(tmp_path):
    table = subprocess.run([_script("mefnet-table"), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert table.returncode != 0 and "experiment.json is missing" in table.stderr


def test_every_subpackage_is_listed_in_pyproject():
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    # A package mapped from another folder (package-dir) is found under that folder's name.
    for name, folder in tool["package-dir"].items():
        if name in listed:
            listed.add(".".join(Path(folder).parts))
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "mefnet").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_the_wheel_ships_the_hydra_configs_inside_the_package(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("mefnet-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for cfg in (REPO / "conf").rglob("*.yaml"):
        assert f"mefnet/conf/{cfg.relative_to(REPO / 'conf').as_posix()}" in names
    # The LOSO sweeper sits in Hydra's plugin namespace, where Hydra's scan finds it.
    assert "hydra_plugins/mefnet_loso/__init__.py" in names and "hydra_plugins/__init__.py" not in names


def test_a_command_run_in_process_leaves_hydra_full_error_as_it_was(monkeypatch):
    """cli() sets HYDRA_FULL_ERROR=1 for Hydra only while it runs: a test or notebook that
    calls a command in-process must not pass it on to the commands it starts later (they
    would print tracebacks instead of one-line messages)."""
    import os

    from mefnet.utils.cli import cli

    def bad():
        raise ValueError("data.batch_size: 0 must be >= 1")

    for before in (None, "0"):
        if before is None:
            monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        else:
            monkeypatch.setenv("HYDRA_FULL_ERROR", before)
        with pytest.raises(SystemExit, match="mefnet-x: data.batch_size"):
            cli("mefnet-x", bad, argv_debug=False)
        assert os.environ.get("HYDRA_FULL_ERROR") == before
