"""Reading annotation spreadsheets (xlsx, legacy xls through xlrd, csv) with errors that name the
file, row and fix, and the cell parsers every adapter shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mepipe.errors import AnnotationError

#: Cell values that mean "not annotated" in a frame-number column (CASME II and MMEW write ``/``,
#: SAMM-LV writes ``-1``; a blank cell is also missing).
MISSING_MARKS = ("/", "-", "-1", "", "nan", "NaN", "N/A", "n/a")


def find_annotation(root: Path, wanted: object, known: Sequence[str], dataset: str) -> Path:
    """Locate the annotation file: ``wanted`` (name or path) if given, else the first known name.

    Searches ``root`` and its immediate sub-folders.
    """
    candidates = [str(wanted)] if wanted else list(known)
    for name in candidates:
        p = Path(name)
        if p.is_absolute() and p.is_file():
            return p
        for base in (root, *sorted(d for d in root.iterdir() if d.is_dir())):
            if (base / name).is_file():
                return base / name
    raise AnnotationError(
        f"{dataset}: annotation file not found under {root}; looked for {candidates}. "
        "Copy the coding file from the dataset archive there, or set dataset.options.annotation"
    )


def _xls_rows(path: Path, sheet: str | int) -> list[list[Any]]:
    """The cells of a legacy ``.xls`` sheet through xlrd: text as ``str``, numbers as ``int`` when
    whole else ``float``, empty cells ``None`` (read directly: pandas' xlrd engine is deprecated)."""
    import xlrd

    book = xlrd.open_workbook(str(path), on_demand=True)
    try:
        ws = book.sheet_by_name(sheet) if isinstance(sheet, str) else book.sheet_by_index(sheet)
        rows = []
        for r in range(ws.nrows):
            row: list[Any] = []
            for kind, value in zip(ws.row_types(r), ws.row_values(r), strict=True):
                if kind in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                    row.append(None)
                elif kind == xlrd.XL_CELL_NUMBER and float(value).is_integer():
                    row.append(int(value))
                else:
                    row.append(value)
            rows.append(row)
        return rows
    finally:
        book.release_resources()


def _frame(rows: list[list[Any]], header: int | None) -> pd.DataFrame:
    """``rows`` as read_excel would give them: the ``header`` row (0-based) as columns, or none."""
    width = max((len(r) for r in rows), default=0)
    rows = [r + [None] * (width - len(r)) for r in rows]
    if header is None:
        return pd.DataFrame(rows, dtype=object)
    if header >= len(rows):
        return pd.DataFrame(columns=[f"Unnamed: {j}" for j in range(width)], dtype=object)
    names: list[str] = []
    for j, v in enumerate(rows[header]):
        name = f"Unnamed: {j}" if is_blank(v) else cell_str(v)
        names.append(name if name not in names else f"{name}.{names.count(name)}")
    return pd.DataFrame(rows[header + 1 :], columns=names, dtype=object)


def read_table(path: Path, *, header_row: int | None = 1, sheet: str | int = 0) -> pd.DataFrame:
    """Read a sheet as strings-or-numbers. ``header_row`` is 1-based as Excel shows it (None: no header).

    ``.xlsx`` goes through openpyxl, legacy ``.xls`` (``CASME2_label_Ver_2.xls``,
    ``CAS(ME)3_part_A_v2.xls``) through xlrd, ``.csv`` through pandas.
    """
    header = None if header_row is None else header_row - 1
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, header=header, dtype=object)
        if path.suffix.lower() == ".xls":
            return _frame(_xls_rows(path, sheet), header)
        return pd.read_excel(path, sheet_name=sheet, header=header, dtype=object)
    except ImportError as exc:  # .xls needs xlrd (a dependency), .xlsx openpyxl
        raise AnnotationError(
            f"{path}: the reader for this format is not installed ({exc}); reinstall mepipe with its "
            "dependencies (pip install xlrd openpyxl), or save the file as .xlsx"
        ) from exc
    except Exception as exc:  # corrupt file, wrong format, missing sheet
        raise AnnotationError(
            f"{path}: cannot be read as a spreadsheet ({exc}); re-copy it from the archive"
        ) from exc


def sheet_names(path: Path) -> list[str]:
    """The sheet names of a workbook (``.xlsx`` or ``.xls``), in order."""
    try:
        if path.suffix.lower() == ".xls":
            import xlrd

            return list(xlrd.open_workbook(str(path), on_demand=True).sheet_names())
        return list(pd.ExcelFile(path).sheet_names)
    except Exception as exc:  # corrupt file, wrong format, missing reader
        raise AnnotationError(
            f"{path}: cannot be read as a workbook ({exc}); re-copy it from the archive"
        ) from exc


def is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def cell_str(v: Any) -> str:
    """A cell as a clean string ('' for blanks; ``4.0`` -> ``'4'``)."""
    if is_blank(v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def cell_int(v: Any, column: str, *, missing: Sequence[str] | None = None) -> int | None:
    """A frame-number cell as int. Values in ``missing`` (e.g. ``'/'``) give ``None``.

    Raises:
        ValueError: naming the column and the value when it is not a whole number.
    """
    if missing is not None and (is_blank(v) or str(v).strip() in missing):
        return None
    try:
        f = float(str(v).strip())
    except ValueError:
        raise ValueError(f"{column} is {v!r}, not a frame number") from None
    if not f.is_integer():
        raise ValueError(f"{column} is {v!r}, not a whole frame number")
    return int(f)
