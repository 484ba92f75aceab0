"""CAS(ME)^2 long videos (macro and micro), as distributed: ``rawpic/s15/15_0101disgustingteeth/img1.jpg``
+ ``CAS(ME)^2code_final.xlsx``.

Quirks handled here (``shared/reference/datasets.md`` sections 2 and 3, CAS(ME)^2):

* The coding sheet ``CASFEcode_final`` has **no header row**; columns are positional:
  ``subject, video (anger1_1), onset, apex, offset, AUs, emotion category, expression type,
  self-reported emotion``. (A re-saved copy whose first row is a header is tolerated: that row is
  skipped because its subject cell is the word ``subject``.)
* Subject numbers and video names must be mapped to folder names through two more sheets:
  ``naming rule1`` maps the sheet's subject number (3rd column) to the folder code (2nd column,
  ``15`` -> ``s15``), ``naming rule2`` maps a stimulus name (2nd column, ``anger1`` = the video cell
  up to ``_``) to a 4-digit code (1st column, ``0101``). The video folder is the one in ``s15`` whose
  name starts with ``15_0101`` (the stimulus title follows: ``15_0101disgustingteeth``).
* Both micro **and** macro rows are read: ``macro-expression`` rows get ``expression_type="macro"``
  (a pre-training source with annotated intervals). The option ``types`` keeps only one kind.
* ``offset`` 0 (and ``apex`` 0) mean **unknown**. With an unknown offset the clip is cut at the apex
  and ``extra["offset"]`` says ``unknown``, so the keyframe stage reports the offset as estimated;
  a row with neither is reported (``bad_value``). A headerless sheet's anchored fixes count rows
  from Excel row 1.
* The folder holds the whole recording; frames are cut to the annotated interval. File numbers
  (``img1.jpg``) are the frame numbers the sheet uses. 30 fps.
* Canonical subject ids are the folder names (``s15``); clip ids ``s15/anger1_1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mepipe.datasets.base import register_adapter
from mepipe.datasets.common import digits_of
from mepipe.datasets.rowscan import Columns, RowProblem, SheetAdapter, SheetRow
from mepipe.datasets.sheets import cell_int, cell_str, is_blank, read_table, sheet_names
from mepipe.errors import AnnotationError

CODE_SHEET, SUBJECT_SHEET, VIDEO_SHEET = "CASFEcode_final", "naming rule1", "naming rule2"
#: The headerless sheet's columns, named by position (the names appear in messages).
POSITIONAL = (
    "subject (1st column)",
    "video (2nd column)",
    "onset (3rd column)",
    "apex (4th column)",
    "offset (5th column)",
    "AUs (6th column)",
    "emotion (7th column)",
    "expression type (8th column)",
    "self-report (9th column)",
)
TYPES = {"micro-expression": "micro", "macro-expression": "macro"}
UNKNOWN = ("0", "", "/", "-")


def _sheet(path: Path, name: str, position: int) -> str | int:
    """The sheet called ``name``, else the one at ``position`` (copies rename sheets)."""
    names = sheet_names(path)
    if name in names:
        return name
    if len(names) > position:
        return position
    raise AnnotationError(
        f"{path}: has sheets {names}, but CAS(ME)^2 needs {CODE_SHEET!r}, {SUBJECT_SHEET!r} and "
        f"{VIDEO_SHEET!r}; "
        "use the coding file as distributed"
    )


def _subject_codes(path: Path) -> dict[int, int]:
    """``naming rule1``: sheet subject number -> folder code (``1 -> 15`` for ``s15``)."""
    table = read_table(path, header_row=None, sheet=_sheet(path, SUBJECT_SHEET, 1))
    out: dict[int, int] = {}
    for i, rec in enumerate(table.itertuples(index=False), start=1):
        cells = list(rec)
        if len(cells) < 3 or is_blank(cells[1]) or is_blank(cells[2]):
            continue
        try:
            out[digits_of(cells[2])] = digits_of(cells[1])
        except ValueError:
            if i == 1:  # a header line in a re-saved copy
                continue
            raise AnnotationError(
                f"{path} sheet {SUBJECT_SHEET!r} row {i}: {cells[:3]} is not "
                "(name, folder code, subject number); fix the row"
            ) from None
    return out


def _video_codes(path: Path) -> dict[str, str]:
    """``naming rule2``: stimulus name (``anger1``) -> 4-digit code (``0101``)."""
    table = read_table(path, header_row=None, sheet=_sheet(path, VIDEO_SHEET, 2))
    out: dict[str, str] = {}
    for rec in table.itertuples(index=False):
        cells = list(rec)
        if len(cells) < 2 or is_blank(cells[0]) or is_blank(cells[1]):
            continue
        code = cell_str(cells[0])
        if code.isdigit():  # Excel may have stored 0101 as the number 101
            out[cell_str(cells[1]).lower()] = code.zfill(4)
    return out


@register_adapter("casme_sq")
class CasmeSqAdapter(SheetAdapter):
    """CAS(ME)^2 expression intervals in long videos (30 fps, 640x480, 22 subjects; 57 micro + 300 macro).

    Options:
        annotation: coding file name or path (default ``CAS(ME)^2code_final.xlsx`` under the root).
        frames_dir: the ``rawpic`` folder (default ``rawpic`` under the root).
        types: ``all`` (default), ``micro`` or ``macro``.
        fixes: alternative fix table (default ``manifests/fixes/casme_sq.yaml``).
    """

    coding_files = ("CAS(ME)^2code_final.xlsx", "CAS(ME)2code_final.xlsx", "code_final.xlsx")
    frame_dirs = ("rawpic", "CASME_sq/rawpic", "rawpic_crop")
    frames_what = "CAS(ME)^2 rawpic"
    columns = Columns(*POSITIONAL[:5], POSITIONAL[6], POSITIONAL[5])
    header_row = 0  # the code sheet has no header
    optional_keyframes = ("apex", "offset")
    end_at_apex = True
    fps = 30.0
    option_names = ("annotation", "frames_dir", "types", "fixes")

    def prepare(self) -> None:
        self.subjects, self.videos = _subject_codes(self.sheet), _video_codes(self.sheet)

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        table = read_table(self.sheet, header_row=None, sheet=_sheet(self.sheet, CODE_SHEET, 0))
        for i, rec in enumerate(table.itertuples(index=False), start=1):
            cells = list(rec) + [None] * (len(POSITIONAL) - len(rec))
            if all(is_blank(v) for v in cells[:5]):
                continue
            if i == 1 and cell_str(cells[0]).lower().startswith("sub"):
                continue  # header line in a re-saved copy; the distributed sheet has none
            yield i, dict(zip(POSITIONAL, cells[: len(POSITIONAL)], strict=True))

    def subject_id(self, value: Any) -> str:
        number = digits_of(value)
        if number not in self.subjects:
            raise RowProblem(
                "bad_subject", f"subject {number} is not listed in sheet {SUBJECT_SHEET!r}; add it there"
            )
        return f"s{self.subjects[number]:02d}"

    def kind(self, row: SheetRow) -> str | None:
        kind = TYPES.get(row.cell(POSITIONAL[7]).lower())
        if kind is None:
            raise RowProblem(
                "bad_value",
                f"expression type {row.cells[POSITIONAL[7]]!r} is not micro-expression or macro-expression; "
                "fix the 8th column",
            )
        return kind

    def keyframe(self, v: Any, column: str, *, missing_ok: bool) -> int | None:
        """The onset must be a number; apex/offset ``0`` (or a mark in :data:`UNKNOWN`) mean unknown."""
        if not missing_ok:
            return cell_int(v, column)
        value = cell_int(v, column, missing=UNKNOWN)
        return None if value == 0 else value

    def _stimulus(self, row: SheetRow) -> str:
        stimulus = row.name.split("_")[0].lower()
        if stimulus not in self.videos:
            raise RowProblem(
                "bad_value",
                f"video {row.name!r}: stimulus {stimulus!r} is not listed in sheet {VIDEO_SHEET!r}",
            )
        return self.videos[stimulus]

    def source(self, row: SheetRow, values: Mapping[str, Any]) -> Path:
        """``rawpic/s15/15_0101<title>``; a non-existent path (reported later) when absent."""
        code, video_code = int(row.subject[1:]), self._stimulus(row)
        subject_dir = self.frames_root / row.subject
        if not subject_dir.is_dir():
            subject_dir = self.frames_root / f"s{code}"
        prefixes = (f"{code:02d}_{video_code}", f"{code}_{video_code}")
        if subject_dir.is_dir():
            for p in sorted(subject_dir.iterdir()):
                if p.is_dir() and p.name.startswith(prefixes):
                    return p
        return subject_dir / f"{prefixes[0]}*"

    def extra(self, row: SheetRow) -> dict[str, str]:
        return {
            **super().extra(row),
            "subject_number": str(digits_of(row.cells[self.columns.subject])),
            "video_code": self._stimulus(row),
            "self_report": row.cell(POSITIONAL[8]),
        }
