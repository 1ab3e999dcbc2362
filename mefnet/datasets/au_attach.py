"""``mefnet-aus attach``: fill the ``aus`` column of a flow folder from the official sheets.

Published flow folders (the MEGC2019 ``norm_u_v_os`` images) come with emotion labels
only. The action units of their CASME II and SAMM clips are in the datasets' own coding
sheets; this command joins them by dataset / subject / clip (ids compared in the
canonical spelling of :mod:`mefnet.datasets.subject_ids`, so ``samm,6`` finds sheet
subject ``6`` and folder ``006``) and writes them in the form ``clips.csv`` uses.

What each row of ``labels.csv`` gets:

* a clip of a dataset whose sheet is given and that the sheet lists: its AUs, normalised
  (``R12+L14`` -> ``12+14``; ``ref(X)`` / ``X or Y`` follow ``--uncertain``); an empty
  cell for a coded clip without AU;
* a clip the sheet does not list, or whose AU cell does not parse (CASME II writes ``?``
  for a few clips): ``?``, "not annotated", so the AU task leaves it out; an ``aus`` value
  the row already had is kept;
* a clip of any other dataset (SMIC has no AU codes): its existing ``aus`` value, or ``?``.

Every clip that got no AUs is reported. The user's file is never lost: by default
``labels.csv`` is replaced atomically after the original is copied beside it (the
report says where); ``--out`` writes a new file instead and leaves ``labels.csv`` as it is.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mefnet.datasets.action_units import (
    DEFAULT_AU_SET,
    NOT_ANNOTATED,
    UNCERTAIN_CHOICES,
    parse_au_cell,
    parse_normalised,
)
from mefnet.datasets.casme2 import read_casme2_sheet
from mefnet.datasets.clip_index import DatasetError
from mefnet.datasets.flow_folder import AU_COLUMN, HEADER, LABEL_FILE
from mefnet.datasets.samm import read_samm_sheet
from mefnet.datasets.subject_ids import canonical_clip, canonical_subject

EXAMPLE = """The previous labels.csv is kept as labels.csv.bak; then train with
mefnet-train dataset=flow_folder dataset.index.root=data/megc2019_flows task=au

example:
  mefnet-aus attach data/megc2019_flows --casme2-sheet CASME2-coding-20140508.xlsx --samm-sheet SAMM_Micro_FACS_Codes_v2.xlsx"""


@dataclass(frozen=True)
class SheetAUs:
    """One dataset's AU cells by (subject, clip), in canonical spelling."""

    dataset: str
    source: str
    cells: dict[tuple[str, str], tuple[int, object]]  # -> (sheet row, raw AU cell)


@dataclass
class AttachReport:
    """What :func:`attach_aus` did, clip by clip."""

    matched: Counter = field(default_factory=Counter)  # dataset -> clips given AUs from a sheet
    unmatched: list[str] = field(default_factory=list)  # sentences naming the clip
    unparsed: list[str] = field(default_factory=list)
    no_sheet: Counter = field(default_factory=Counter)  # dataset -> clips of a dataset without sheet
    changed: list[str] = field(default_factory=list)  # clips whose earlier aus value was replaced
    au_counts: dict[str, Counter] = field(default_factory=dict)  # dataset -> clips per AU
    written: Path | None = None
    backup: Path | None = None

    def lines(self) -> list[str]:
        out = []
        for dataset, n in self.matched.items():
            counts = self.au_counts.get(dataset, Counter())
            shown = ", ".join(f"AU{a} {counts[a]}" for a in DEFAULT_AU_SET)
            out.append(f"{dataset}: {n} clips matched in the sheet (clips per AU: {shown})")
        for dataset, n in self.no_sheet.items():
            out.append(f"{dataset}: {n} clips not annotated (no AU sheet for this dataset; their aus cell is "
                       "kept, or ? = not annotated)")
        for title, items in (("not in the sheet", self.unmatched), ("AU cell does not parse", self.unparsed),
                             ("earlier aus value replaced", self.changed)):
            if items:
                out.append(f"{len(items)} clip(s) {title}:")
                out += [f"  {s}" for s in items]
        if self.written is not None:
            out.append(f"wrote {self.written}" + (f" (the previous file is kept as {self.backup})"
                                                   if self.backup is not None else ""))
        return out


def read_sheet_aus(dataset: str, sheet: str | Path) -> SheetAUs:
    """The AU cells of a CASME II coding sheet or the SAMM FACS sheet (MICRO_ONLY), read by
    the adapters' own sheet readers."""
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {"casme2": read_casme2_sheet, "samm": read_samm_sheet}
    path = Path(sheet).expanduser()
    if not path.is_file():
        raise DatasetError(f"{dataset} sheet {path} does not exist")
    table = readers[dataset](path)
    source = table.attrs.get("source", str(path))
    if "aus" not in table.attrs.get("columns_found", table.columns):
        raise DatasetError(f"{source}: no action-unit column (Action Units); expected the {dataset} coding sheet")
    cells: dict[tuple[str, str], tuple[int, object]] = {}
    for _, row in table.iterrows():
        excel_row = int(row["excel_row"])
        try:
            key = (canonical_subject(dataset, row["subject"]), canonical_clip(dataset, str(row["clip"])))
        except DatasetError as e:
            raise DatasetError(f"{source}, row {excel_row}: {e}") from None
        if key in cells:
            raise DatasetError(f"{source}, row {excel_row}: clip {dataset}/{key[0]}/{key[1]} is listed twice "
                               f"(also row {cells[key][0]}); expected each clip once")
        cells[key] = (excel_row, row["aus"])
    return SheetAUs(dataset, source, cells)


def _read_labels(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (HEADER when the file has none) and (line number, cells) of labels.csv."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; expected a flow folder's {LABEL_FILE} "
                           f"({','.join(HEADER)})")
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), start=1) if any(row)]
    if not rows:
        raise DatasetError(f"{path} is empty; expected one row per clip: {','.join(HEADER)}")
    if [c.lower() for c in rows[0][1][:4]] == list(HEADER):
        return [c.lower() if c.lower() == AU_COLUMN else c for c in rows[0][1]], rows[1:]
    wide = [n for n, cells in rows if len(cells) > 4]
    if wide:
        raise DatasetError(f"{path}, row {wide[0]}: more than 4 values in a file without a header line; "
                           f"add the header {','.join(HEADER)},... naming the extra columns")
    return list(HEADER), rows


def attach_aus(labels: Path, sheets: Sequence[SheetAUs], uncertain: str = "exclude",
               out: Path | None = None, dry_run: bool = False) -> AttachReport:
    """Fill the ``aus`` column of ``labels`` from ``sheets`` (module docstring)."""
    if uncertain not in UNCERTAIN_CHOICES:
        raise DatasetError(f"--uncertain: '{uncertain}' is not one of {', '.join(UNCERTAIN_CHOICES)}")
    header, rows = _read_labels(labels)
    if AU_COLUMN not in header:
        header = [*header, AU_COLUMN]
    at = header.index(AU_COLUMN)
    by_dataset = {s.dataset: s for s in sheets}
    report = AttachReport()
    table: list[list[str]] = []
    for line, cells in rows:
        cells = cells + [""] * (len(header) - len(cells))
        if len(cells) < 4 or not all(cells[:4]):
            raise DatasetError(f"{labels}, row {line}: expected {','.join(HEADER)}, got {cells}")
        dataset, subject, clip = cells[0], cells[1], cells[2]
        old = cells[at]
        sheet = by_dataset.get(dataset)
        if sheet is None:
            report.no_sheet[dataset] += 1
            cells[at] = old or NOT_ANNOTATED
            table.append(cells)
            continue
        try:
            key = (canonical_subject(dataset, subject), canonical_clip(dataset, clip))
        except DatasetError as e:
            raise DatasetError(f"{labels}, row {line}: {e}") from None
        name = f"{dataset}/{key[0]}/{key[1]} ({labels.name} row {line})"
        if key not in sheet.cells:
            report.unmatched.append(f"{name}: not in {sheet.source}" + (f"; its aus value '{old}' is kept" if old else ""))
            cells[at] = old or NOT_ANNOTATED
            table.append(cells)
            continue
        sheet_row, raw = sheet.cells[key]
        parsed = parse_au_cell(raw, uncertain)
        if parsed.problem is not None:
            report.unparsed.append(f"{name}: {sheet.source}, row {sheet_row}: {parsed.problem}" +
                                   (f"; its aus value '{old}' is kept" if old else "; written as ? (not annotated)"))
            cells[at] = old or NOT_ANNOTATED
            table.append(cells)
            continue
        new = parsed.normalised
        if old and old != new:
            report.changed.append(f"{name}: '{old}' -> '{new or 'no AU'}'")
        cells[at] = new
        report.matched[dataset] += 1
        report.au_counts.setdefault(dataset, Counter()).update(parse_normalised(new))
        table.append(cells)
    if not report.matched:
        raise DatasetError(
            f"{labels}: no clip matched the sheet(s) of {', '.join(by_dataset) or 'no dataset'} (datasets in the "
            f"file: {', '.join(sorted({r[0] for r in table}))}); check the dataset names and the sheets"
        )
    if not dry_run:
        _write(labels, header, table, out, report)
    return report


def _write(labels: Path, header: list[str], table: list[list[str]], out: Path | None, report: AttachReport) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    target = labels if out is None else out
    if out is not None and out.resolve() != labels.resolve() and out.exists():
        raise DatasetError(f"--out {out} already exists; choose a new file (nothing was written)")
    if target.resolve() == labels.resolve():
        report.backup = _free_name(labels.with_name(labels.name + ".bak"))
        shutil.copy2(labels, report.backup)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    report.written = target


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2`` ... if taken: an earlier backup is never overwritten."""
    if not path.exists():
        return path
    n = 1
    while path.with_name(f"{path.name}.{n}").exists():
        n += 1
    return path.with_name(f"{path.name}.{n}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mefnet-aus`` and its ``attach`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="mefnet-aus", description="Action-unit annotation of flow folders.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLE,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    attach = sub.add_parser(
        "attach", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLE,
        help="fill the aus column of a flow folder's labels.csv from the CASME II / SAMM sheets",
        description=textwrap.fill(
            "Fill the aus column of FLOW_FOLDER/labels.csv from the CASME II coding sheet and the SAMM "
            "FACS sheet, joined by dataset / subject / clip. Clips the sheets do not list, whose AU cell does "
            "not parse, or of a dataset without sheet (SMIC) get '?' (not annotated; an existing aus value is "
            "kept) and are reported. labels.csv is replaced atomically and the previous file kept as "
            "labels.csv.bak (or .bak.1 ...); --out writes a new file instead.", width=79,
        ),
    )
    attach.add_argument("flow_folder", metavar="FLOW_FOLDER", type=Path,
                        help="a flow folder (labels.csv + <dataset>/<subject>/<clip>.png), or its labels.csv")
    attach.add_argument("--casme2-sheet", type=Path, help="CASME II coding sheet (CASME2-coding-20140508.xlsx)")
    attach.add_argument("--samm-sheet", type=Path, help="SAMM FACS sheet (SAMM_Micro_FACS_Codes_v2.xlsx)")
    attach.add_argument("--uncertain", choices=UNCERTAIN_CHOICES, default="exclude",
                        help="SAMM's ref(X) and 'X or Y' AUs: exclude (default) or include")
    attach.add_argument("--out", type=Path, help="write the filled file here instead of replacing labels.csv")
    attach.add_argument("--dry-run", action="store_true", help="report what would be filled; write nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``mefnet-aus``: fill a flow folder's ``aus`` column from the sheets; the exit status (1 on refused input, as every mefnet command; 2 for a usage error)."""
    args = build_parser().parse_args(argv)
    labels = args.flow_folder / LABEL_FILE if args.flow_folder.is_dir() else args.flow_folder
    try:
        sheets = [read_sheet_aus(d, p) for d, p in (("casme2", args.casme2_sheet), ("samm", args.samm_sheet)) if p]
        if not sheets:
            raise DatasetError("give at least one sheet: --casme2-sheet and/or --samm-sheet")
        report = attach_aus(labels, sheets, args.uncertain, out=args.out, dry_run=args.dry_run)
    except (DatasetError, OSError) as e:
        print(f"mefnet-aus attach: {e}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    if args.dry_run:
        print("dry run: nothing written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
