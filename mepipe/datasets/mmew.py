"""MMEW (micro part), as distributed: ``MMEW/Micro_Expression/<emotion>/<Sxx-yy-zzz>/*.jpg`` +
``MMEW_Micro_Exp.xlsx``.

Quirks handled here (``shared/reference/datasets.md`` section 2, MMEW):

* Clip folders are grouped by **emotion**, not by subject: the folder of a row is
  ``Micro_Expression/<Estimated Emotion>/<Filename>``. If it is not there we look in the other emotion
  folders; a clip found under another emotion than its (possibly fixed) label is reported as
  ``label_conflict`` (never built with an ambiguous label) -- a fix setting ``emotion`` resolves it.
* Columns by name: ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units,
  Estimated Emotion`` (+ ``remarks`` kept in ``extra``).
* Subject ids are canonicalised to ``S01`` (the spelling of the clip names); the cell may be ``1``.
* ``others`` is kept as written. MEB renames it to ``repression`` for its cross-dataset tables; that
  is a labelling decision and lives in the label schemes (``manifests/labels/mmew_*.yaml``).
* MEB's 16 apex/offset corrections are known only by row position and without the values they
  replace: ``manifests/fixes/mmew.yaml`` anchors them to their rows and applies one only where the
  row as written cannot be built and the corrected row can.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mepipe.datasets.base import register_adapter
from mepipe.datasets.common import digits_of, row_issue
from mepipe.datasets.rowscan import Columns, SheetAdapter, SheetRow
from mepipe.records import ClipIssue, ClipRecord


def subject_id(value: object) -> str:
    """``1`` / ``"S1"`` / ``"S01"`` -> ``"S01"``."""
    return f"S{digits_of(value):02d}"


@register_adapter("mmew")
class MmewAdapter(SheetAdapter):
    """MMEW micro-expression clips (90 fps, 1920x1080, 36 subjects, 300 clips).

    Options:
        annotation: coding file name or path (default ``MMEW_Micro_Exp.xlsx`` under the root).
        frames_dir: the ``Micro_Expression`` folder (default: ``MMEW/Micro_Expression`` or
            ``Micro_Expression`` under the root).
        fixes: alternative fix table (default ``manifests/fixes/mmew.yaml``).
    """

    coding_files = ("MMEW_Micro_Exp.xlsx",)
    frame_dirs = ("MMEW/Micro_Expression", "Micro_Expression", "MMEW_Final/Micro_Expression")
    frames_what = "MMEW Micro_Expression"
    columns = Columns(
        "Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion", "Action Units"
    )
    optional_columns = ("remarks",)
    extra_columns = {"remarks": "remarks"}
    fps = 90.0

    def subject_id(self, value: Any) -> str:
        return subject_id(value)

    def prepare(self) -> None:
        self._emotion_dirs: dict[str, Path] | None = None

    def source(self, row: SheetRow, values: Mapping[str, Any]) -> Path:
        """``<emotion as written>/<Filename>``; if absent, the same clip folder under another emotion."""
        if self._emotion_dirs is None:
            self._emotion_dirs = {p.name.lower(): p for p in sorted(self.frames_root.iterdir()) if p.is_dir()}
        emotion, filename = row.cell(self.columns.emotion), row.name
        first = self._emotion_dirs.get(emotion.lower(), self.frames_root / emotion) / filename
        if first.is_dir():
            return first
        for d in self._emotion_dirs.values():
            if (d / filename).is_dir():
                return d / filename
        return first

    def check(self, row: SheetRow, clip: ClipRecord) -> ClipIssue | None:
        folder = Path(clip.source_path)
        if folder.is_dir() and folder.parent.name.lower() != clip.emotion_raw.lower():
            return row_issue(
                self.name,
                self.sheet,
                row.number,
                "label_conflict",
                f"the sheet says {clip.emotion_raw!r} but the clip folder is under {folder.parent.name!r} "
                f"({folder}); add a fix setting the emotion in manifests/fixes/mmew.yaml",
                clip_id=clip.clip_id,
                subject=clip.subject,
            )
        return None
