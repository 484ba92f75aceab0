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
  a row with neither is reported (``bad_value``).
* The folder holds the whole recording; frames are cut to the annotated interval. File numbers
  (``img1.jpg``) are the frame numbers the sheet uses. 30 fps.
* Canonical subject ids are the folder names (``s15``); clip ids ``s15/anger1_1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.common import FrameLister, digits_of, finish_clip, fixed_row_values, pick_dir, row_issue
from mepipe.datasets.sheets import cell_int, cell_str, find_annotation, is_blank, read_table
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue, ClipRecord

CODING_FILES = ("CAS(ME)^2code_final.xlsx", "CAS(ME)2code_final.xlsx", "code_final.xlsx")
FRAME_DIRS = ("rawpic", "CASME_sq/rawpic", "rawpic_crop")
CODE_SHEET, SUBJECT_SHEET, VIDEO_SHEET = "CASFEcode_final", "naming rule1", "naming rule2"
POSITIONAL = ("subject", "video", "onset", "apex", "offset", "aus", "emotion", "type", "self_report")
TYPES = {"micro-expression": "micro", "macro-expression": "macro"}
UNKNOWN = ("0", "", "/", "-")
FPS = 30.0


def _sheet(path: Path, name: str, position: int) -> str | int:
    """The sheet called ``name``, else the one at ``position`` (copies rename sheets)."""
    import pandas as pd

    try:
        names = pd.ExcelFile(path).sheet_names
    except Exception as exc:
        raise AnnotationError(
            f"{path}: cannot be read as a workbook ({exc}); re-copy it from the archive"
        ) from exc
    if name in names:
        return name
    if len(names) > position:
        return position
    raise AnnotationError(
        f"{path}: has sheets {names}, but CAS(ME)^2 needs {CODE_SHEET!r}, {SUBJECT_SHEET!r} and {VIDEO_SHEET!r}; "
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


def _keyframe(v: Any, column: str, *, missing_ok: bool) -> int | None:
    """The onset must be a number; apex/offset ``0`` (or a mark in :data:`UNKNOWN`) mean unknown."""
    if not missing_ok:
        return cell_int(v, column)
    value = cell_int(v, column, missing=UNKNOWN)
    return None if value == 0 else value


@register_adapter("casme_sq")
class CasmeSqAdapter(DatasetAdapter):
    """CAS(ME)^2 expression intervals in long videos (30 fps, 640x480, 22 subjects; 57 micro + 300 macro).

    Options:
        annotation: coding file name or path (default ``CAS(ME)^2code_final.xlsx`` under the root).
        frames_dir: the ``rawpic`` folder (default ``rawpic`` under the root).
        types: ``all`` (default), ``micro`` or ``macro``.
        fixes: alternative fix table (default ``manifests/fixes/casme_sq.yaml``).
    """

    expression_type = "micro"
    option_names = ("annotation", "frames_dir", "types", "fixes")

    def scan(self) -> ScanResult:
        types = str(self.options.get("types", "all"))
        if types not in ("all", "micro", "macro"):
            raise ConfigError(
                f"casme_sq: types {types!r} must be all, micro or macro; fix dataset.options.types"
            )
        sheet = find_annotation(self.root, self.options.get("annotation"), CODING_FILES, self.name)
        subjects, videos = _subject_codes(sheet), _video_codes(sheet)
        frames_root = pick_dir(self.root, self.options.get("frames_dir"), FRAME_DIRS, what="CAS(ME)^2 rawpic")
        table = read_table(sheet, header_row=None, sheet=_sheet(sheet, CODE_SHEET, 0))
        frames = FrameLister()
        out = ScanResult()
        for i, rec in enumerate(table.itertuples(index=False), start=1):
            cells = list(rec) + [None] * (len(POSITIONAL) - len(rec))
            row = dict(zip(POSITIONAL, cells[: len(POSITIONAL)], strict=True))
            if all(is_blank(v) for v in cells[:5]):
                continue
            if i == 1 and cell_str(row["subject"]).lower().startswith("sub"):
                continue  # header line in a re-saved copy; the distributed sheet has none
            self._row(out, frames, sheet, frames_root, subjects, videos, types, i, row)
        return out

    def _row(
        self,
        out: ScanResult,
        frames: FrameLister,
        sheet: Path,
        frames_root: Path,
        subjects: dict[int, int],
        videos: dict[str, str],
        types: str,
        row_no: int,
        row: dict[str, Any],
    ) -> None:
        def fail(reason: str, text: str, clip_id: str = "", subject: str = "") -> None:
            out.failures.append(
                (None, row_issue(self.name, sheet, row_no, reason, text, clip_id=clip_id, subject=subject))
            )

        kind = TYPES.get(cell_str(row["type"]).lower())
        if kind is None:
            fail(
                "bad_value",
                f"expression type {row['type']!r} is not micro-expression or macro-expression; "
                "fix the 8th column",
            )
            return
        if types != "all" and kind != types:
            return  # excluded by the pipeline's dataset.options.types
        try:
            number = digits_of(row["subject"])
        except ValueError as exc:
            fail("bad_subject", f"{exc}; fix the 1st column")
            return
        if number not in subjects:
            fail("bad_subject", f"subject {number} is not listed in sheet {SUBJECT_SHEET!r}; add it there")
            return
        code = subjects[number]
        subject = f"s{code:02d}"
        video = cell_str(row["video"])
        clip_id = f"{subject}/{video}"
        stimulus = video.split("_")[0].lower()
        if stimulus not in videos:
            fail(
                "bad_value",
                f"video {video!r}: stimulus {stimulus!r} is not listed in sheet {VIDEO_SHEET!r}",
                clip_id,
                subject,
            )
            return
        fixed = fixed_row_values(
            self.name,
            sheet,
            row_no,
            subject,
            video,
            clip_id,
            {
                "onset": row["onset"],
                "apex": row["apex"],
                "offset": row["offset"],
                "emotion": row["emotion"],
                "aus": row["aus"],
            },
            ("onset (3rd column)", "apex (4th column)", "offset (5th column)"),
            self.options.get("fixes"),
            optional=("apex", "offset"),
            parse=_keyframe,
        )
        if fixed is None:  # dropped by a fix
            return
        if isinstance(fixed, ClipIssue):
            out.failures.append((None, fixed))
            return
        if fixed.offset is None and fixed.apex is None:
            fail(
                "bad_value",
                "offset is 0 (unknown) and there is no apex, so the interval has no end; "
                "add a fix with the offset",
                clip_id,
                subject,
            )
            return
        folder = self._video_folder(frames_root, code, videos[stimulus])
        source = "annotated" if fixed.apex is not None else "apex_missing"
        clip = ClipRecord(
            dataset=self.name,
            subject=subject,
            clip_id=clip_id,
            source_kind="images",
            source_path=str(folder),
            onset=fixed.onset,
            apex=fixed.apex,
            offset=fixed.offset,
            keyframe_source=source,
            emotion_raw=fixed.emotion,
            aus_raw=fixed.aus,
            fps=FPS,
            expression_type=kind,
            fixes=fixed.fixes,
            extra={
                "row": str(row_no),
                "subject_number": str(number),
                "video_code": videos[stimulus],
                "self_report": cell_str(row["self_report"]),
                **(
                    {"offset": "unknown (0 in the sheet); clip cut at the apex"}
                    if fixed.offset is None
                    else {}
                ),
            },
        )
        out.add(*finish_clip(clip, frames, sheet=sheet, row=row_no, end_at_apex=True))

    @staticmethod
    def _video_folder(frames_root: Path, code: int, video_code: str) -> Path:
        """``rawpic/s15/15_0101<title>``; a non-existent path (reported later) when absent."""
        subject_dir = frames_root / f"s{code:02d}"
        if not subject_dir.is_dir():
            subject_dir = frames_root / f"s{code}"
        prefix = f"{code:02d}_{video_code}"
        if subject_dir.is_dir():
            for p in sorted(subject_dir.iterdir()):
                if p.is_dir() and (p.name.startswith(prefix) or p.name.startswith(f"{code}_{video_code}")):
                    return p
        return subject_dir / f"{prefix}*"
