"""``manifest.csv``: one typed row per clip (built, failed or pending), written atomically.

Spreadsheet safety: a text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
would be run as a formula by Excel or LibreOffice when the CSV is opened there (clip ids, emotion and
action-unit strings and messages come from the dataset's own files). Such cells are written with a
leading apostrophe (``'=HYPERLINK(...)``), which spreadsheets show as text; a cell that itself begins
with an apostrophe gets one more. :func:`read_manifest` removes exactly that one apostrophe, so a
manifest reads back to the values that were written. Numeric columns are never changed (``-1`` stays
``-1``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from mepipe.errors import ShardError
from mepipe.records import ManifestRow

MANIFEST_NAME = "manifest.csv"
STATE_NAME = "build-state.json"
"""The build engine's record of a build folder (config hash, status, attempts; mepipe.engine.state)."""
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet treat a cell as a formula."""
_TEXT_COLUMNS = tuple(f.name for f in dataclasses.fields(ManifestRow) if f.type in ("str", str))
_SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.h5")


def read_state(out_dir: str | Path) -> dict:
    """``OUT/build-state.json`` as a dict ({} when absent or unreadable, e.g. older builds)."""
    try:
        return json.loads((Path(out_dir) / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}


def neutralise_cell(value: str) -> str:
    """Prefix ``'`` to text a spreadsheet would execute (and to text already starting with ``'``)."""
    if value and (value[0] in FORMULA_START or value[0] == "'"):
        return "'" + value
    return value


def restore_cell(value: str) -> str:
    """Undo :func:`neutralise_cell`."""
    if len(value) >= 2 and value[0] == "'" and (value[1] in FORMULA_START or value[1] == "'"):
        return value[1:]
    return value


def is_shard_name(name: str) -> bool:
    """True for a plain shard file name (``shard-00003.h5``): no folder, no ``..``, ends in ``.h5``."""
    return bool(_SHARD_NAME.fullmatch(name))


def shard_path(out_dir: str | Path, name: str) -> Path:
    """``OUT/shards/<name>``, refusing names that would point outside ``OUT/shards``."""
    if not is_shard_name(name):
        raise ShardError(
            f"shard name {name!r} in {Path(out_dir) / MANIFEST_NAME} is not a shard file name; the "
            "manifest was edited or damaged: rebuild it with `mepipe build-dataset`"
        )
    return Path(out_dir) / "shards" / name


def write_manifest(rows: Iterable[ManifestRow], out_dir: Path) -> Path:
    """Write all rows to ``out_dir/manifest.csv`` via a temporary file, fsync and an atomic rename."""
    path = out_dir / MANIFEST_NAME
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ManifestRow.columns())
        w.writeheader()
        for r in rows:
            d = dataclasses.asdict(r)
            for k in _TEXT_COLUMNS:
                d[k] = neutralise_cell(d[k])
            w.writerow(d)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_manifest(out_dir_or_file: str | Path) -> list[ManifestRow]:
    """Read a manifest (the file, or the build folder holding it) into typed rows.

    Raises:
        ShardError: the file is missing, lacks columns, or a row's ``shard`` is not a plain shard
            file name (a crafted manifest must not make mepipe open files outside ``OUT/shards``).
    """
    p = Path(out_dir_or_file)
    path = p / MANIFEST_NAME if p.is_dir() else p
    if not path.is_file():
        raise ShardError(f"{path} not found; is {p} the --out folder of `mepipe build-dataset`?")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(ManifestRow.columns()) - set(reader.fieldnames or [])
        if missing:
            raise ShardError(f"{path}: columns {sorted(missing)} missing; rebuild with this mepipe version")
        rows = []
        for line, raw in enumerate(reader, start=2):
            for k in _TEXT_COLUMNS:
                raw[k] = restore_cell(raw.get(k) or "")
            row = ManifestRow.from_row(raw)
            if row.shard and not is_shard_name(row.shard):
                raise ShardError(
                    f"{path} line {line}: shard {row.shard!r} is not a shard file name (it would be "
                    "read from outside the build's shards/ folder); the manifest was edited or "
                    "damaged: rebuild it with `mepipe build-dataset`"
                )
            rows.append(row)
        return rows


def require_complete(out_dir_or_file: str | Path) -> list[ManifestRow]:
    """The manifest rows of a finished build; an unfinished one (``pending`` rows) raises.

    ``pairs``, ``folds`` and training call this so they never work on part of a dataset.

    Raises:
        ShardError: naming the build, how many clips are pending and how to finish it.
    """
    rows = read_manifest(out_dir_or_file)
    pending = sum(r.status == "pending" for r in rows)
    if pending:
        p = Path(out_dir_or_file)
        folder = p if p.is_dir() else p.parent
        raise ShardError(
            f"{folder} is an unfinished build: {pending} of {len(rows)} clips are still pending. "
            f"Finish it by running the same `mepipe build-dataset ... --out {folder}` command again "
            "(it resumes and keeps the clips already built)"
        )
    return rows


def read_manifest_frame(out_dir_or_file: str | Path):
    """The manifest as a :class:`pandas.DataFrame`, for code that reads the shards with pandas.

    The same rows as :func:`read_manifest` (so the formula neutralisation is undone and shard names
    are checked), one column per manifest column in file order: text columns stay ``str`` (a SAMM
    subject ``006`` stays ``"006"``, where plain ``pd.read_csv`` would make it the number ``6``; an
    empty cell is ``""``, never NaN), integer columns are ``int64``, float columns ``float64``.

    Raises:
        ShardError: as :func:`read_manifest`.
    """
    import pandas as pd

    rows = read_manifest(out_dir_or_file)
    columns = ManifestRow.columns()
    frame = pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=columns)
    kinds = {f.name: str(f.type) for f in dataclasses.fields(ManifestRow)}
    dtypes = {c: {"int": "int64", "float": "float64"}.get(kinds[c], "object") for c in columns}
    return frame.astype(dtypes)
