"""Reading a user's annotation sheet so that every later error can name file and row.

Coding sheets are hand-made spreadsheets: a preamble above the header (SAMM), blank
header cells (CASME II), numbers stored as text, a "/" where a number was expected. This
module reads them cell by cell with openpyxl (so the spreadsheet row number Excel shows
is kept for every row; pandas would renumber rows and drop blank ones) and returns a
pandas table with an ``excel_row`` column, plus the helpers every adapter needs to find
its root folder and its sheet with errors that say what to set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mefnet.datasets.clip_index import DatasetError

HEADER_SEARCH_ROWS = 40


def not_utf8(path: str | Path, e: UnicodeDecodeError) -> DatasetError:
    """The error for a text file (labels.csv, a clip list) that is not UTF-8: which file,
    where, and how to save it so that it reads."""
    return DatasetError(
        f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start} cannot be decoded); "
        "save it as UTF-8 (in Excel: 'CSV UTF-8'; elsewhere e.g. iconv -f latin1 -t utf-8)"
    )


def require_root(root: str | Path | None, *, dataset_title: str, env_var: str, config_key: str) -> Path:
    """The dataset root as a Path, or an error telling the user which setting to fill in."""
    if root is None or str(root).strip() in ("", "None", "null", "???"):
        raise DatasetError(
            f"{dataset_title} root folder is not set: set the environment variable {env_var} "
            f"to the folder holding your copy, or set the config key {config_key} "
            f"(e.g. on the command line: {config_key}=/data/...)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"{dataset_title} root folder {path} does not exist (from {config_key} / {env_var}); "
            "point it at the folder holding your copy of the dataset"
        )
    return path


def find_sheet(
    sheet: str | Path | None,
    *,
    search_dirs: Sequence[Path],
    default_names: Sequence[str],
    dataset_title: str,
    config_key: str,
) -> Path:
    """The annotation sheet: ``sheet`` if given, else the first default name found in ``search_dirs``."""
    if sheet is not None and str(sheet).strip() not in ("", "None", "null"):
        path = Path(sheet).expanduser()
        if not path.is_file():
            raise DatasetError(
                f"{dataset_title} annotation sheet {path} does not exist (from {config_key}); "
                "give the path of the coding sheet that came with your copy"
            )
        return path
    for folder in search_dirs:
        for name in default_names:
            if (folder / name).is_file():
                return folder / name
    looked = ", ".join(str(d) for d in search_dirs)
    raise DatasetError(
        f"{dataset_title} annotation sheet not found: looked for {' or '.join(default_names)} "
        f"in {looked}; set {config_key} to the path of your coding sheet"
    )


def _normalized(name: object) -> str:
    return re.sub(r"[\s_]+", " ", str(name)).strip().lower()


@dataclass(frozen=True)
class SheetColumn:
    """A column an adapter needs: its canonical name and the header spellings accepted for it."""

    key: str
    headers: tuple[str, ...]
    required: bool = True


def _cell_rows(path: Path, sheet_name: str | None) -> tuple[list[tuple[int, list[object]]], str]:
    """(excel row number, cell values) of every row, and the sheet's name."""
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, header=None, dtype=object, keep_default_na=False, encoding="utf-8-sig")
        rows = [
            (i + 1, [None if v == "" else v for v in values])
            for i, values in enumerate(frame.itertuples(index=False, name=None))
        ]
        return rows, path.name
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many types for a non-spreadsheet file
        raise DatasetError(f"{path}: cannot be read as an .xlsx workbook ({e})") from None
    try:
        if sheet_name is None:
            ws = book.worksheets[0]
        elif sheet_name in book.sheetnames:
            ws = book[sheet_name]
        else:
            raise DatasetError(
                f"{path}: no sheet named '{sheet_name}' (the workbook has {book.sheetnames})"
            )
        rows = [
            (cells[0].row, [c.value for c in cells])
            for cells in ws.iter_rows()
            if cells and getattr(cells[0], "row", None) is not None
        ]
        return rows, ws.title
    finally:
        book.close()


def read_sheet(
    path: Path,
    columns: Sequence[SheetColumn],
    *,
    sheet_name: str | None = None,
    header_row: int | None = None,
) -> pd.DataFrame:
    """Rows of an annotation sheet as a table with one column per ``columns`` key.

    ``header_row`` is the spreadsheet row number (1-based, as Excel shows it) of the
    header; None finds it as the first of the top rows holding every required header
    (SAMM's preamble length differs between releases). Fully blank rows are dropped; the
    ``excel_row`` column keeps each row's number for error messages.
    """
    rows, title = _cell_rows(path, sheet_name)
    where = f"{path} (sheet '{title}')"
    required = [c for c in columns if c.required]

    def locate(cells: list[object]) -> dict[str, int] | None:
        names = {_normalized(v): i for i, v in reversed(list(enumerate(cells))) if v is not None}
        found = {}
        for col in columns:
            hit = next((names[_normalized(h)] for h in col.headers if _normalized(h) in names), None)
            if hit is not None:
                found[col.key] = hit
        return found if all(c.key in found for c in required) else None

    if header_row is not None:
        candidates = [(n, cells) for n, cells in rows if n == header_row]
    else:
        candidates = rows[:HEADER_SEARCH_ROWS]
    for n, cells in candidates:
        positions = locate(cells)
        if positions is not None:
            header_at = n
            break
    else:
        wanted = ", ".join(f"'{c.headers[0]}'" for c in required)
        if header_row is not None:
            got = next((cells for n, cells in rows if n == header_row), [])
            shown = [v for v in got if v is not None]
            missing = [
                f"'{c.headers[0]}'" for c in required
                if not any(_normalized(h) in {_normalized(v) for v in shown} for h in c.headers)
            ]
            raise DatasetError(
                f"{where}, row {header_row} (header): column(s) {', '.join(missing)} not found; "
                f"the row holds {shown}; expected columns {wanted}. Was a column renamed, or is "
                "this another sheet version? Rename the header or pass the right sheet."
            )
        first = next((cells for _, cells in rows if any(v is not None for v in cells)), [])
        raise DatasetError(
            f"{where}: no header row with the columns {wanted} in its first "
            f"{HEADER_SEARCH_ROWS} rows (first non-empty row: {[v for v in first if v is not None]}). "
            "Was a column renamed, or is this not the coding sheet?"
        )

    records = []
    for n, cells in rows:
        if n <= header_at or all(v is None or (isinstance(v, str) and not v.strip()) for v in cells):
            continue
        record: dict[str, object] = {"excel_row": n}
        for key, i in positions.items():
            value = cells[i] if i < len(cells) else None
            record[key] = value.strip() if isinstance(value, str) else value
        records.append(record)
    table = pd.DataFrame.from_records(records, columns=["excel_row", *positions])
    for col in columns:
        if col.key not in table:
            table[col.key] = None
    table.attrs["source"] = where
    table.attrs["columns_found"] = list(positions)  # optional columns absent from the sheet are all None
    return table


def as_frame_number(value: object) -> int | None:
    """A frame number cell as int, or None when it is blank, "/" or not a whole number."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return int(float(text))
    return None


def describe_cell(value: object) -> str:
    """A sheet cell as an error message quotes it: ``'value'``, or ``blank``."""
    return "blank" if value is None else f"'{value}'"

