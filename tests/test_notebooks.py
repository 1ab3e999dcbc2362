"""The notebooks run top to bottom on the synthetic dataset and are stored without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

# 03_python_api.ipynb runs in tests/test_api_notebook.py (its cells executed without a kernel).
NOTEBOOKS = sorted(p for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")
                   if p.name != "03_python_api.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs_and_executes(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs before committing"
    monkeypatch.setenv("MEFNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEFNET_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()


def test_there_is_a_notebook():
    assert NOTEBOOKS
