"""SAMM, as distributed: ``SAMM/006/006_1_2/006_05562.jpg`` + ``SAMM_Micro_FACS_Codes_v2.xlsx``.

Quirks handled here (``shared/reference/datasets.md`` section 2, SAMM):

* Two copies of the coding file circulate. ``SAMM_Micro_FACS_Codes_v2.xlsx`` starts with a block of
  prose and has its header on Excel row 13; the older ``SAMM_20181215_Micro_FACS_Codes_v2.xlsx`` has
  a single header row. We **detect** the header row (the first row holding ``Subject`` and
  ``Filename``) instead of hard-coding 13, and record the file used in ``extra["coding_file"]``.
  Row-anchored fixes count data rows under the detected header, so they point at the same rows in
  both copies.
* Columns are read by name: ``Subject, Filename, Onset Frame, Apex Frame, Offset Frame,
  Action Units, Estimated Emotion`` (+ ``Objective Classes``, ``Inducement Code``, ``Notes`` ... kept
  in ``extra`` when present).
* ``Subject`` reads as an int (``6``); the canonical id and the folder name are ``006``.
* Frames are grayscale ``{subject}_{frame:05d}.jpg`` numbered by absolute video frame, matching the
  annotation (the frame source replicates gray to 3 channels).
* Emotion spellings differ in case between rows (``Other`` / ``Others``); the raw string is kept and
  label schemes match case-insensitively.
* MEB's SAMM fixes (one offset, three apexes, five AU strings with "or") are known only by row
  position: ``manifests/fixes/samm.yaml`` anchors them to their rows, with what each row must hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mepipe.datasets.base import register_adapter
from mepipe.datasets.common import digits_of
from mepipe.datasets.rowscan import Columns, SheetAdapter, SheetRow

OPTIONAL = ("Objective Classes", "Inducement Code", "Notes", "Duration", "Micro")


def subject_id(value: object) -> str:
    """``6`` / ``"6"`` / ``"006"`` -> ``"006"``."""
    return f"{digits_of(value):03d}"


@register_adapter("samm")
class SammAdapter(SheetAdapter):
    """SAMM micro-expression clips (200 fps, 2040x1088 grayscale, 32 subjects, 159 clips).

    Options:
        annotation: coding file name or path (default: the first of :attr:`coding_files` found).
        frames_dir: folder holding the ``006/006_1_2/`` tree (default: ``SAMM`` or the root itself).
        fixes: alternative fix table (default ``manifests/fixes/samm.yaml``).
    """

    coding_files = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_20181215_Micro_FACS_Codes_v2.xlsx")
    frame_dirs = ("SAMM", "SAMM_CROP", "SAMM_cropped", ".")
    frames_what = "SAMM frame"
    columns = Columns(
        "Subject",
        "Filename",
        "Onset Frame",
        "Apex Frame",
        "Offset Frame",
        "Estimated Emotion",
        "Action Units",
    )
    optional_columns = OPTIONAL
    extra_columns = {c: c.lower().replace(" ", "_") for c in OPTIONAL}
    header_row = None  # 13 in the current copy, 1 in the older one: detected
    fps = 200.0

    def subject_id(self, value: Any) -> str:
        return subject_id(value)

    def accept_frames_root(self, folder: Path) -> bool:
        return any(d.is_dir() and d.name.isdigit() and len(d.name) == 3 for d in folder.iterdir())

    def extra(self, row: SheetRow) -> dict[str, str]:
        return {**super().extra(row), "coding_file": self.sheet.name}
