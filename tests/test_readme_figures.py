"""The synthetic-figure check (make check-readme): it finds the synthetic rows docs/results.md
quotes and reports every difference; the README quotes none."""

from __future__ import annotations

import csv
from pathlib import Path

from mefnet.report.readme_figures import differences, main, quoted_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"  # the page whose synthetic figures the guard checks

DOC = """Some text.

| experiment | clips | folds | UF1 | UAR | accuracy |
|---|---:|---:|---:|---:|---:|
| synthetic-a | 200 | 16 | 0.8632 | 0.8598 | 0.8700 |
| synthetic-a-shuffled (control) | 200 | 16 | **0.3400** | 0.3344 | 0.4300 |
| flow_folder-x | 164 | 16 | 0.6472 | 0.6549 | 0.6463 |

| experiment | clips | folds | macro F1 | average binary F1 |
|---|---:|---:|---:|---:|
| synthetic-au | 270 | 3 | 0.8004 | 0.8485 |
"""


def _write(tmp_path: Path, uf1: str = "0.8632") -> Path:
    with (tmp_path / "table.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "part", "clips", "folds", "uf1", "uar", "accuracy"])
        w.writerow(["synthetic-a", "all", 200, 16, uf1, "0.8598", "0.8700"])
        w.writerow(["synthetic-a", "synth_a", 90, 1, "0.1", "0.1", "0.1"])
        w.writerow(["synthetic-a-shuffled", "all", 200, 16, "0.3400", "0.3344", "0.43"])
    with (tmp_path / "table_au.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "part", "clips", "folds", "macro_f1", "avg_binary_f1"])
        w.writerow(["synthetic-au", "all", 270, 3, "0.8004", "0.8485"])
    return tmp_path


def test_quoted_rows_are_the_synthetic_rows_of_every_table():
    rows = quoted_rows(DOC)
    assert [r["experiment"] for r in rows] == ["synthetic-a", "synthetic-a-shuffled", "synthetic-au"]
    assert rows[0]["line"] == 5 and rows[0]["figures"]["uf1"] == "0.8632"
    assert rows[1]["figures"]["uf1"] == "0.3400"  # bold stripped
    assert rows[2]["figures"] == {"clips": "270", "folds": "3", "macro_f1": "0.8004", "avg_binary_f1": "0.8485"}


def test_matching_figures_pass_and_a_changed_figure_is_named_with_its_line(tmp_path, capsys):
    assert differences(DOC, _write(tmp_path)) == ([], 14)
    problems, _ = differences(DOC, _write(tmp_path, uf1="0.8610"))
    assert problems == ["README.md:5 synthetic-a uf1: README.md says 0.8632, the code gives 0.8610"]
    doc = tmp_path / "README.md"
    doc.write_text(DOC)
    assert main([str(doc), str(tmp_path)]) == 1
    assert "README.md:5 synthetic-a uf1" in capsys.readouterr().err


def test_a_quoted_experiment_missing_from_the_table_fails(tmp_path):
    _write(tmp_path)
    problems, _ = differences(DOC + "| synthetic-gone | 1 | 1 | 0.5 | 0.5 | 0.5 |\n", tmp_path)
    assert problems and "synthetic-gone" in problems[0] and "not in" in problems[0]


def test_no_table_is_a_clear_error(tmp_path, capsys):
    assert main([str(RESULTS), str(tmp_path)]) == 2
    assert "table.csv does not exist" in capsys.readouterr().err


def test_the_results_page_quotes_every_experiment_of_the_synthetic_set():
    from mefnet.experiment.reproduce import experiments, load_set

    names = {n for n, _ in experiments(load_set("synthetic"))}
    assert {r["experiment"] for r in quoted_rows(RESULTS.read_text(encoding="utf-8"))} == names


def test_the_readme_quotes_no_synthetic_figure():
    """The guard checks docs/results.md; a synthetic row in the README would go unchecked."""
    assert quoted_rows((ROOT / "README.md").read_text(encoding="utf-8")) == []
