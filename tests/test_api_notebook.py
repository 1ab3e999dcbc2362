"""notebooks/03_python_api.ipynb uses the Python API and runs: its code cells, extracted
with json and executed in order in one namespace (no Jupyter needed), in a fresh folder."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_python_api.ipynb"


def _code_cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_api_notebook_is_stored_without_outputs_and_uses_experiment():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb["cells"] if c["cell_type"] == "code")
    assert "from mefnet import Experiment" in "\n".join(_code_cells())


def test_the_api_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setenv("MEFNET_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("MEFNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__notebook__"}
    for k, source in enumerate(_code_cells()):
        exec(compile(source, f"{NOTEBOOK.name} cell {k}", "exec"), namespace)  # noqa: S102
    results = namespace["results"]
    assert set(results) == {"api-ststnet", "api-am3f"}
    assert all(r.metrics["n"] == 48 and len(r.predictions) == 48 for r in results.values())
    assert namespace["final"] == tmp_path / "outputs" / "api-am3f" / "seed_42" / "final" / "model.pt"
    assert namespace["final"].is_file()
    assert [m.path for m in namespace["predictor"].models] == [namespace["final"]]
    assert -1 <= namespace["c"].difference <= 1
