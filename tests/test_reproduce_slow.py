"""`make reproduce-table` on the synthetic set: every experiment runs, the models learn,
the label-permuted control does not, the table and figures are where it says, and every
synthetic figure docs/results.md quotes is what this run gives.

Slow (about 13 minutes on 2 cores, one run shared by both tests): run by `make test-slow`,
`make check-readme` and CI, not by `make test`. The set runs through its public command
(`python -m mefnet.experiment.reproduce`, what `make reproduce-table` runs) on fresh output
and data folders, exactly as a user runs it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mefnet.experiment.reproduce import experiments, load_set
from mefnet.report.readme_figures import differences, quoted_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("reproduce")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEFNET_CASME2_ROOT", "MEFNET_SAMM_ROOT", "MEFNET_SMIC_ROOT", "MEFNET_FLOW_ROOT",
                        "MEFNET_REPRODUCE_SET", "MEFNET_N_JOBS")}
    env.update(MEFNET_OUTPUT_DIR=str(tmp / "out"), MEFNET_DATA_DIR=str(tmp / "data"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "mefnet.experiment.reproduce", "--set", "synthetic"],
                          cwd=tmp, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp / "out" / "reproduce" / "synthetic"


@pytest.mark.slow
def test_the_synthetic_reproduction_learns_and_its_shuffled_control_stays_near_chance(synthetic_set):
    out = synthetic_set
    with (out / "table.csv").open(newline="") as f:
        rows = {r["experiment"]: r for r in csv.DictReader(f) if r["part"] == "all"}
    names = {name for name, _ in experiments(load_set("synthetic"))}
    with (out / "table_au.csv").open(newline="") as f:
        au = {r["experiment"]: r for r in csv.DictReader(f) if r["part"] == "all"}
    assert set(rows) | set(au) == names
    # The cross-dataset group: three synthetic datasets, one left out per fold.
    assert float(au["synthetic-xdb-au-ststnet"]["macro_f1"]) >= 0.7
    assert float(au["synthetic-xdb-au-ststnet-shuffled-labels"]["macro_f1"]) <= 0.5
    xdb = rows.pop("synthetic-xdb-emotion-ststnet-ce")
    assert int(xdb["clips"]) == 270 and int(xdb["folds"]) == 3 and float(xdb["uf1"]) >= 0.75, xdb
    for name, r in rows.items():
        assert int(r["clips"]) == 200 and int(r["folds"]) == 16, r
        assert (out / f"confusion_{name}.png").is_file()
        if "shuffled" in name:
            assert float(r["uf1"]) <= 0.45, r  # chance level for three classes is about 0.33
        elif "resnet" in name:
            assert float(r["uf1"]) >= 0.5, r  # the deepest baseline is not converged after 40 epochs
        else:
            assert float(r["uf1"]) >= 0.75, r


@pytest.mark.slow
def test_readme_synthetic_figures_are_what_the_code_gives(synthetic_set):
    """Synthetic runs are deterministic: every figure of the synthetic tables of
    docs/results.md (the model/ablation table and the cross-dataset tables) must match the
    written table.csv / table_au.csv to the printed digit. On failure, update the page from
    the table."""
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    problems, compared = differences(text, synthetic_set, "docs/results.md")
    names = {name for name, _ in experiments(load_set("synthetic"))}
    assert {r["experiment"] for r in quoted_rows(text)} == names, "docs/results.md should quote every experiment of the set"
    assert not problems, "docs/results.md differs from the code's synthetic figures:\n" + "\n".join(problems)
