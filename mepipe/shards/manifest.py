"""``manifest.csv``: one typed row per clip (built or failed), written atomically."""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from mepipe.errors import ShardError
from mepipe.records import ManifestRow

MANIFEST_NAME = "manifest.csv"


def write_manifest(rows: Iterable[ManifestRow], out_dir: Path) -> Path:
    """Write all rows to ``out_dir/manifest.csv`` via a temporary file and an atomic rename."""
    path = out_dir / MANIFEST_NAME
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ManifestRow.columns())
        w.writeheader()
        for r in rows:
            w.writerow(dataclasses.asdict(r))
    os.replace(tmp, path)
    return path


def read_manifest(out_dir_or_file: str | Path) -> list[ManifestRow]:
    """Read a manifest (the file, or the build folder holding it) into typed rows."""
    p = Path(out_dir_or_file)
    path = p / MANIFEST_NAME if p.is_dir() else p
    if not path.is_file():
        raise ShardError(f"{path} not found; is {p} the --out folder of `mepipe build-dataset`?")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(ManifestRow.columns()) - set(reader.fieldnames or [])
        if missing:
            raise ShardError(f"{path}: columns {sorted(missing)} missing; rebuild with this mepipe version")
        return [ManifestRow.from_row(r) for r in reader]


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
