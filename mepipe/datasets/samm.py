"""SAMM, as distributed: ``SAMM/006/006_1_2/006_05562.jpg`` + ``SAMM_Micro_FACS_Codes_v2.xlsx``.

Quirks handled here (``shared/reference/datasets.md`` section 2, SAMM):

* Two copies of the coding file circulate. ``SAMM_Micro_FACS_Codes_v2.xlsx`` starts with a block of
  prose and has its header on Excel row 13; the older ``SAMM_20181215_Micro_FACS_Codes_v2.xlsx`` has
  a single header row. We **detect** the header row (the first row holding ``Subject`` and
  ``Filename``) instead of hard-coding 13, and record the file used in ``extra["coding_file"]``.
* Columns are read by name: ``Subject, Filename, Onset Frame, Apex Frame, Offset Frame,
  Action Units, Estimated Emotion`` (+ ``Objective Classes``, ``Inducement Code``, ``Notes`` kept in
  ``extra`` when present).
* ``Subject`` reads as an int (``6``); the canonical id and the folder name are ``006``.
* Frames are grayscale ``{subject}_{frame:05d}.jpg`` numbered by absolute video frame, matching the
  annotation (the frame source replicates gray to 3 channels).
* Emotion spellings differ in case between rows (``Other`` / ``Others``); the raw string is kept and
  label schemes match case-insensitively.
* MEB's SAMM fixes (one offset, three apexes, five AU strings) are known only by row position, so
  they cannot be keyed; see ``manifests/fixes/samm.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.common import (
    FrameLister,
    digits_of,
    find_header_row,
    finish_clip,
    fixed_row_values,
    pick_dir,
    read_rows,
    row_issue,
)
from mepipe.datasets.sheets import cell_str, find_annotation
from mepipe.records import ClipIssue, ClipRecord

CODING_FILES = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_20181215_Micro_FACS_Codes_v2.xlsx")
FRAME_DIRS = ("SAMM", "SAMM_CROP", "SAMM_cropped", ".")
COLUMNS = (
    "Subject",
    "Filename",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Action Units",
    "Estimated Emotion",
)
OPTIONAL = ("Objective Classes", "Inducement Code", "Notes", "Duration", "Micro")
FPS = 200.0


def subject_id(value: object) -> str:
    """``6`` / ``"6"`` / ``"006"`` -> ``"006"``."""
    return f"{digits_of(value):03d}"


def _has_subject_folders(p: Path) -> bool:
    return any(d.is_dir() and d.name.isdigit() and len(d.name) == 3 for d in p.iterdir())


@register_adapter("samm")
class SammAdapter(DatasetAdapter):
    """SAMM micro-expression clips (200 fps, 2040x1088 grayscale, 32 subjects, 159 clips).

    Options:
        annotation: coding file name or path (default: the first of :data:`CODING_FILES` found).
        frames_dir: folder holding the ``006/006_1_2/`` tree (default: ``SAMM`` or the root itself).
        fixes: alternative fix table (default ``manifests/fixes/samm.yaml``).
    """

    option_names = ("annotation", "frames_dir", "fixes")

    def scan(self) -> ScanResult:
        sheet = find_annotation(self.root, self.options.get("annotation"), CODING_FILES, self.name)
        # The header row differs between the two copies of the coding file (13 vs 1): detect it.
        header = find_header_row(sheet, ("Subject", "Filename"))
        frames_root = pick_dir(
            self.root,
            self.options.get("frames_dir"),
            FRAME_DIRS,
            what="SAMM frame",
            accept=_has_subject_folders,
        )
        frames = FrameLister()
        out = ScanResult()
        for row_no, row in read_rows(sheet, COLUMNS, OPTIONAL, header_row=header):
            try:
                subject = subject_id(row["Subject"])
            except ValueError as exc:
                out.failures.append(
                    (None, row_issue(self.name, sheet, row_no, "bad_subject", f"{exc}; fix the Subject cell"))
                )
                continue
            filename = cell_str(row["Filename"])
            clip_id = f"{subject}/{filename}"
            fixed = fixed_row_values(
                self.name,
                sheet,
                row_no,
                subject,
                filename,
                clip_id,
                {
                    "onset": row["Onset Frame"],
                    "apex": row["Apex Frame"],
                    "offset": row["Offset Frame"],
                    "emotion": row["Estimated Emotion"],
                    "aus": row["Action Units"],
                },
                ("Onset Frame", "Apex Frame", "Offset Frame"),
                self.options.get("fixes"),
            )
            if fixed is None:  # dropped by a fix
                continue
            if isinstance(fixed, ClipIssue):
                out.failures.append((None, fixed))
                continue
            extra = {"row": str(row_no), "coding_file": sheet.name}
            extra.update(
                {k.lower().replace(" ", "_"): cell_str(row[k]) for k in OPTIONAL if cell_str(row[k])}
            )
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
                extra=extra,
            )
            out.add(*finish_clip(clip, frames, sheet=sheet, row=row_no))
        return out
