"""CASME II, as distributed: ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` + the coding sheet.

Quirks handled here (see ``../shared/reference/datasets.md`` section 2):

* The coding file exists in several versions (``CASME2-coding-20140508.xlsx`` is the original;
  ``-20190701``, ``-updated`` and ``CASME2_label_Ver_2.xls`` circulate). We read columns **by name**
  (``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion``), so the
  two blank-header columns (``Unnamed: 2``, ``Unnamed: 6``) and column order do not matter.
* ``Subject`` is an integer (1..26); the folder is ``sub{subject:02d}``.
* ``ApexFrame`` is ``/`` for some rows: the apex is then *missing* (estimated later by the keyframe
  stage, recorded as such in the manifest), never guessed here.
* Frame files are numbered by absolute video frame (``img46.jpg``), matching the annotation; they are
  sorted numerically (``img100`` after ``img99``).
* AU strings keep their laterality prefixes (``R12``, ``L14``) verbatim in ``aus_raw``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mepipe.datasets.base import (
    DatasetAdapter,
    ScanResult,
    register_adapter,
)
from mepipe.datasets.common import FrameLister, finish_clip, fixed_row_values
from mepipe.datasets.sheets import cell_int, cell_str, find_annotation, read_sheet
from mepipe.records import ClipIssue, ClipRecord

CODING_FILES = (
    "CASME2-coding-20140508.xlsx",
    "CASME2-coding-20190701.xlsx",
    "CASME2-coding-updated.xlsx",
    "CASME2_label_Ver_2.xls",
)
FRAME_DIRS = ("CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped")
COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)
FPS = 200.0
#: Cells meaning "no apex" in ``ApexFrame`` (the sheet writes ``/``). Narrower than
#: :data:`~mepipe.datasets.common.MISSING_MARKS` on purpose: an apex of ``-1`` is reported, not dropped.
APEX_MISSING = ("/", "", "-")


def subject_id(value: object) -> str:
    """``1`` / ``"1"`` / ``"sub01"`` -> ``"sub01"``."""
    text = str(value).strip()
    if text.lower().startswith("sub"):
        text = text[3:]
    return f"sub{int(float(text)):02d}"


def keyframe(v: Any, column: str, *, missing_ok: bool) -> int | None:
    """A CASME II keyframe cell; only the apex may be missing (:data:`APEX_MISSING`)."""
    return cell_int(v, column, missing=APEX_MISSING if missing_ok else None)


@register_adapter("casme2")
class Casme2Adapter(DatasetAdapter):
    """CASME II micro-expression clips (200 fps, 640x480, 26 subjects).

    Options:
        annotation: coding file name or path (default: the first known version found in the root).
        frames_dir: frame folder under the root (default: the first of ``CASME2_RAW_selected``,
            ``CASME2-RAW``, ``CASME2_RAW``, ``Cropped`` that exists).
        fixes: path of an alternative fix table (default ``manifests/fixes/casme2.yaml``).
    """

    option_names = ("annotation", "frames_dir", "fixes")

    def scan(self) -> ScanResult:
        sheet = find_annotation(self.root, self.options.get("annotation"), CODING_FILES, self.name)
        table = read_sheet(sheet, COLUMNS, header_row=1)
        frames_root = self._frames_root()
        frames = FrameLister()
        out = ScanResult()
        for excel_row, row in table:
            try:
                subject = subject_id(row["Subject"])
            except ValueError:
                out.failures.append(
                    (
                        None,
                        ClipIssue(
                            self.name,
                            f"row{excel_row}",
                            "bad_subject",
                            f"{sheet} row {excel_row}: Subject {row['Subject']!r} is not a subject number; fix the sheet",
                            file=str(sheet),
                            row=excel_row,
                        ),
                    )
                )
                continue
            filename = cell_str(row["Filename"])
            clip_id = f"{subject}/{filename}"
            fixed = fixed_row_values(
                self.name,
                sheet,
                excel_row,
                subject,
                filename,
                clip_id,
                {
                    "onset": row["OnsetFrame"],
                    "apex": row["ApexFrame"],
                    "offset": row["OffsetFrame"],
                    "emotion": row["Estimated Emotion"],
                    "aus": row["Action Units"],
                },
                ("OnsetFrame", "ApexFrame", "OffsetFrame"),
                self.options.get("fixes"),
                parse=keyframe,
            )
            if fixed is None:  # dropped by a fix
                continue
            if isinstance(fixed, ClipIssue):
                out.failures.append((None, fixed))
                continue
            clip = ClipRecord(
                dataset=self.name,
                subject=subject,
                clip_id=clip_id,
                source_kind="images",
                source_path=str(frames_root / subject / filename),
                onset=fixed.onset,
                apex=fixed.apex,
                offset=fixed.offset,
                keyframe_source="annotated" if fixed.apex is not None else "apex_missing",
                emotion_raw=fixed.emotion,
                aus_raw=fixed.aus,
                fps=FPS,
                expression_type="micro",
                fixes=fixed.fixes,
                extra={"row": str(excel_row)},
            )
            # frames listed numerically, validated against the sheet, cut to onset..offset
            out.add(*finish_clip(clip, frames, sheet=sheet, row=excel_row))
        return out

    def _frames_root(self) -> Path:
        wanted = self.options.get("frames_dir")
        for name in [wanted] if wanted else FRAME_DIRS:
            if (self.root / str(name)).is_dir():
                return self.root / str(name)
        from mepipe.errors import ConfigError

        raise ConfigError(
            f"no CASME II frame folder under {self.root}: expected one of {list(FRAME_DIRS)} "
            "(or set dataset.options.frames_dir in the pipeline)"
        )
