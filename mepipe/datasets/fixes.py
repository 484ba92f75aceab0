"""Annotation fix tables: versioned corrections of known errors in the coding files.

A table is ``manifests/fixes/<dataset>.yaml`` (or a user file, ``dataset.options.fixes``)::

    version: 2
    fixes:
      # keyed by clip: the row whose canonical subject and filename match
      - id: casme2-sub04-EP12_01f-apex     # unique; recorded in the manifest's ``fixes`` column
        subject: "sub04"                   # canonical subject id, as the adapter produces it
        filename: EP12_01f                 # the annotation's clip/file name
        set: {apex: 91}                    # onset / apex / offset / emotion / aus, or drop: true
        reason: apex given as '/', value from the re-annotated coding file

      # anchored to a row position: for corrections known only as "row N of file F" (MEB's way)
      - id: meb-casme2-index29-apex
        anchor: {index: 29}                # or {row: 31}; optional files: [<coding-file names>]
        expect: {apex: missing}            # what the row must hold, else nothing is applied
        group: meb-casme2                  # the fixes of a group stand or fall together
        set: {apex: 279}
        reason: ApexFrame is '/'; MEB's apex estimated from optical flow
        source: tvaranka/meb@f731b0a meb/datasets/datasets.py (Casme2.data_frame)

Anchors. ``index`` is the 0-based position among the rows under the header (blank rows count),
which is the pandas index MEB's loaders use; ``row`` is the row number Excel shows. ``files`` limits
the fix to coding files of those names (positions differ between versions).

Expectations (``expect``), checked on the row as written before anything is applied:
``subject``/``filename`` (canonical subject id, clip name), ``onset``/``apex``/``offset`` (a frame
number, or ``missing``: no frame number in the cell), ``emotion``/``aus`` (text, case-insensitive, or
``{contains: TEXT}``), and ``buildable: false`` -- the row as written cannot be built (keyframes out
of order or not on disk) while the fixed row can; that is the only check available for corrections
whose original value is unknown, and it is evaluated per clip by the row scan.

An anchored fix is applied only when its row holds what it expects, its fixed keyframes are in
order (onset <= apex <= offset), and every other fix of its ``group`` matched too (a shifted or
re-sorted sheet makes several anchors fail at once). The checks live in
:mod:`mepipe.datasets.anchors`; every anchored fix gets a
:class:`~mepipe.datasets.anchors.FixOutcome` in ``ScanResult.fix_report`` (``build-info.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from mepipe import resources
from mepipe.errors import AnnotationError

FIXABLE_FIELDS = ("onset", "apex", "offset", "emotion", "aus", "drop")
EXPECT_FIELDS = ("subject", "filename", "onset", "apex", "offset", "emotion", "aus", "buildable")
KEYFRAMES = ("onset", "apex", "offset")
MISSING = "missing"


@dataclass(frozen=True)
class Anchor:
    """Where an anchored fix points: a data-row ``index`` (0-based, under the header) or an Excel ``row``."""

    index: int | None = None
    row: int | None = None
    files: tuple[str, ...] = ()

    def excel_row(self, header_row: int) -> int:
        """The Excel row number, given the sheet's header row (0 for a sheet without one)."""
        return self.row if self.row is not None else header_row + 1 + int(self.index or 0)

    def describe(self) -> str:
        return f"row {self.row}" if self.row is not None else f"data row index {self.index}"


@dataclass(frozen=True)
class Fix:
    """One entry of a fix table: keyed (``subject``, ``filename``) or anchored (``anchor``)."""

    id: str
    values: dict[str, Any]
    reason: str
    subject: str = ""
    filename: str = ""
    anchor: Anchor | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    source: str = ""


@dataclass(frozen=True)
class FixTable:
    """A loaded fix table: keyed fixes by ``(subject, filename)`` and the anchored ones in file order."""

    path: str
    keyed: dict[tuple[str, str], tuple[Fix, ...]]
    anchored: tuple[Fix, ...]

    def for_clip(self, subject: str, filename: str) -> tuple[Fix, ...]:
        return self.keyed.get((subject, filename), ())


def _anchor(entry: Mapping[str, Any], file: Path, fid: str) -> Anchor:
    a = entry["anchor"]
    if not isinstance(a, Mapping) or ("index" in a) == ("row" in a):
        raise AnnotationError(f"{file}: fix {fid!r}: anchor needs exactly one of index (0-based) or row")
    files = a.get("files") or ()
    return Anchor(
        int(a["index"]) if "index" in a else None,
        int(a["row"]) if "row" in a else None,
        tuple(str(f) for f in ([files] if isinstance(files, str) else files)),
    )


@cache
def load_fixes(dataset: str, path: str | None = None) -> FixTable:
    """Read the fix table of ``dataset`` (``manifests/fixes/<dataset>.yaml``, or ``path``).

    Raises:
        ConfigError: the table does not exist (every adapter that applies fixes ships one, even if
            it holds no fix, so a missing file means a broken install or a wrong ``fixes`` option).
        AnnotationError: a malformed entry, naming the file, the entry and what it lacks.
    """
    file = resources.resolve("fixes", path) if path else resources.find("fixes", dataset)
    doc = yaml.safe_load(file.read_text()) or {}
    keyed: dict[tuple[str, str], list[Fix]] = {}
    anchored: list[Fix] = []
    ids: set[str] = set()
    for i, entry in enumerate(doc.get("fixes") or [], start=1):
        key = ("anchor",) if "anchor" in entry else ("subject", "filename")
        missing = [k for k in ("id", *key, "set", "reason") if k not in entry]
        if missing:
            raise AnnotationError(
                f"{file}: fix #{i} lacks {missing}; a fix needs id, set, reason and either subject + "
                "filename or an anchor (see mepipe/datasets/fixes.py)"
            )
        fid = str(entry["id"])
        if fid in ids:
            raise AnnotationError(f"{file}: fix id {fid!r} is used twice; ids must be unique")
        ids.add(fid)
        bad = sorted(set(entry["set"]) - set(FIXABLE_FIELDS))
        bad_expect = sorted(set(entry.get("expect") or {}) - set(EXPECT_FIELDS))
        if bad or bad_expect:
            raise AnnotationError(
                f"{file}: fix {fid!r} uses unknown field(s) {bad + bad_expect}; set allows "
                f"{FIXABLE_FIELDS}, expect allows {EXPECT_FIELDS}"
            )
        fix = Fix(
            fid,
            dict(entry["set"]),
            str(entry["reason"]),
            str(entry.get("subject", "")),
            str(entry.get("filename", "")),
            _anchor(entry, file, fid) if "anchor" in entry else None,
            dict(entry.get("expect") or {}),
            str(entry.get("group", "")),
            str(entry.get("source", "")),
        )
        if fix.anchor is None:
            keyed.setdefault((fix.subject, fix.filename), []).append(fix)
        else:
            anchored.append(fix)
    return FixTable(str(file), {k: tuple(v) for k, v in keyed.items()}, tuple(anchored))


def apply_fixes(
    dataset: str, subject: str, filename: str, values: dict[str, Any], path: str | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return ``values`` with every keyed fix of ``(subject, filename)`` applied, and their ids."""
    fixes = load_fixes(dataset, path).for_clip(subject, filename)
    out = dict(values)
    for fix in fixes:
        out.update(fix.values)
    return out, tuple(f.id for f in fixes)
