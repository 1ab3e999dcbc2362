"""Check that the figures a document quotes for the synthetic set are what the code gives.

``make check-readme`` (and the slow test ``tests/test_reproduce_slow.py``) runs the synthetic
reproduce set on a fresh output folder, then::

    python -m mefnet.report.readme_figures docs/results.md outputs/reproduce/synthetic

Every row of a markdown table in the document whose first cell names an experiment of the
written table (``synthetic-...``; a trailing ``(control)`` or other parenthesis is ignored)
is compared, column by column, with ``table.csv`` (emotion) or ``table_au.csv`` (action
units), part ``all``. Synthetic runs are deterministic, so the figures must agree to the
digits the document prints. Any difference, and any quoted experiment missing from the
written table, is listed with the document's line number; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

# Table header (lower case) -> column of table.csv / table_au.csv.
COLUMNS = {
    "clips": "clips",
    "folds": "folds",
    "uf1": "uf1",
    "uar": "uar",
    "accuracy": "accuracy",
    "macro f1": "macro_f1",
    "average binary f1": "avg_binary_f1",
}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def quoted_rows(text: str, prefix: str = "synthetic-") -> list[dict]:
    """The rows of every markdown table whose first cell starts with ``prefix``:
    ``{"line", "experiment", "figures": {column: text}}`` (only columns in :data:`COLUMNS`)."""
    out = []
    header: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        name = re.sub(r"\s*\(.*\)\s*$", "", cells[0].strip("*` "))
        if not name.startswith(prefix):
            continue
        figures = {COLUMNS[h]: c.strip("* ") for h, c in zip(header[1:], cells[1:], strict=False) if h in COLUMNS}
        out.append({"line": number, "experiment": name, "figures": figures})
    return out


def written_rows(out_dir: str | Path) -> dict[str, dict]:
    """``{experiment: row}`` of part ``all`` from ``table.csv`` and ``table_au.csv``."""
    rows: dict[str, dict] = {}
    for name in ("table.csv", "table_au.csv"):
        path = Path(out_dir) / name
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                rows.update({r["experiment"]: r for r in csv.DictReader(f) if r["part"] == "all"})
    return rows


def _same(quoted: str, written: str) -> bool:
    """Equal at the precision the document prints (``0.8700`` vs ``0.87``: same)."""
    if quoted == written:
        return True
    try:
        digits = len(quoted.split(".")[1]) if "." in quoted else 0
        return round(float(written), digits) == float(quoted)
    except ValueError:
        return False


def differences(text: str, out_dir: str | Path, doc: str = "README.md") -> tuple[list[str], int]:
    """Lines describing every quoted figure that differs from the written table, and the
    number of figures compared."""
    written = written_rows(out_dir)
    problems: list[str] = []
    compared = 0
    for row in quoted_rows(text):
        where = f"{doc}:{row['line']} {row['experiment']}"
        got = written.get(row["experiment"])
        if got is None:
            problems.append(f"{where}: not in {out_dir}/table.csv or table_au.csv")
            continue
        for col, quoted in row["figures"].items():
            compared += 1
            if not _same(quoted, got.get(col, "")):
                problems.append(f"{where} {col}: {doc} says {quoted}, the code gives {got.get(col) or '(empty)'}")
    return problems, compared


def main(argv: list[str] | None = None) -> int:
    """``python -m mefnet.report.readme_figures``: compare a document's synthetic figures with a
    table; the exit status (1 if a figure differs, 2 on bad input)."""
    ap = argparse.ArgumentParser(prog="python -m mefnet.report.readme_figures", description=__doc__.split("\n")[0])
    ap.add_argument("document", help="a markdown file quoting synthetic figures (docs/results.md)")
    ap.add_argument("table_dir", help="the reproduce set's output folder (holds table.csv)")
    a = ap.parse_args(argv)
    doc = Path(a.document)
    if not (Path(a.table_dir) / "table.csv").is_file():
        print(f"error: {Path(a.table_dir) / 'table.csv'} does not exist; run the synthetic set first", file=sys.stderr)
        return 2
    problems, compared = differences(doc.read_text(encoding="utf-8"), a.table_dir, doc.name)
    if not compared and not problems:
        print(f"error: {doc} quotes no synthetic figures", file=sys.stderr)
        return 2
    if problems:
        print(f"{len(problems)} figure(s) in {doc} differ from {a.table_dir}:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"{doc}: all {compared} synthetic figures agree with {a.table_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
