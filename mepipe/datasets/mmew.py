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
* MEB's 16 apex/offset corrections are known only by row position: see ``manifests/fixes/mmew.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.common import (
    FrameLister,
    digits_of,
    finish_clip,
    fixed_row_values,
    pick_dir,
    read_rows,
    row_issue,
)
from mepipe.datasets.sheets import cell_str, find_annotation
from mepipe.records import ClipIssue, ClipRecord

CODING_FILES = ("MMEW_Micro_Exp.xlsx",)
FRAME_DIRS = ("MMEW/Micro_Expression", "Micro_Expression", "MMEW_Final/Micro_Expression")
COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)
OPTIONAL = ("remarks",)
FPS = 90.0


def subject_id(value: object) -> str:
    """``1`` / ``"S1"`` / ``"S01"`` -> ``"S01"``."""
    return f"S{digits_of(value):02d}"


@register_adapter("mmew")
class MmewAdapter(DatasetAdapter):
    """MMEW micro-expression clips (90 fps, 1920x1080, 36 subjects, 300 clips).

    Options:
        annotation: coding file name or path (default ``MMEW_Micro_Exp.xlsx`` under the root).
        frames_dir: the ``Micro_Expression`` folder (default: ``MMEW/Micro_Expression`` or
            ``Micro_Expression`` under the root).
        fixes: alternative fix table (default ``manifests/fixes/mmew.yaml``).
    """

    option_names = ("annotation", "frames_dir", "fixes")

    def scan(self) -> ScanResult:
        sheet = find_annotation(self.root, self.options.get("annotation"), CODING_FILES, self.name)
        frames_root = pick_dir(
            self.root, self.options.get("frames_dir"), FRAME_DIRS, what="MMEW Micro_Expression"
        )
        emotion_dirs = {p.name.lower(): p for p in sorted(frames_root.iterdir()) if p.is_dir()}
        frames = FrameLister()
        out = ScanResult()
        for row_no, row in read_rows(sheet, COLUMNS, OPTIONAL):
            try:
                subject = subject_id(row["Subject"])
            except ValueError as exc:
                out.failures.append(
                    (None, row_issue(self.name, sheet, row_no, "bad_subject", f"{exc}; fix the Subject cell"))
                )
                continue
            filename = cell_str(row["Filename"])
            clip_id = f"{subject}/{filename}"
            sheet_emotion = cell_str(row["Estimated Emotion"])
            fixed = fixed_row_values(
                self.name,
                sheet,
                row_no,
                subject,
                filename,
                clip_id,
                {
                    "onset": row["OnsetFrame"],
                    "apex": row["ApexFrame"],
                    "offset": row["OffsetFrame"],
                    "emotion": sheet_emotion,
                    "aus": row["Action Units"],
                },
                ("OnsetFrame", "ApexFrame", "OffsetFrame"),
                self.options.get("fixes"),
            )
            if fixed is None:  # dropped by a fix
                continue
            if isinstance(fixed, ClipIssue):
                out.failures.append((None, fixed))
                continue
            emotion = fixed.emotion
            folder = self._clip_folder(frames_root, emotion_dirs, sheet_emotion, filename)
            extra = {"row": str(row_no)}
            if cell_str(row["remarks"]):
                extra["remarks"] = cell_str(row["remarks"])
            clip = ClipRecord(
                dataset=self.name,
                subject=subject,
                clip_id=clip_id,
                source_kind="images",
                source_path=str(folder),
                onset=fixed.onset,
                apex=fixed.apex,
                offset=fixed.offset,
                keyframe_source="annotated" if fixed.apex is not None else "apex_missing",
                emotion_raw=emotion,
                aus_raw=fixed.aus,
                fps=FPS,
                expression_type="micro",
                fixes=fixed.fixes,
                extra=extra,
            )
            folder_emotion = folder.parent.name
            if folder.is_dir() and folder_emotion.lower() != emotion.lower():
                out.failures.append(
                    (
                        clip,
                        ClipIssue(
                            self.name,
                            clip_id,
                            "label_conflict",
                            f"{sheet} row {row_no}: the sheet says {emotion!r} but the clip folder is under "
                            f"{folder_emotion!r} ({folder}); add a fix setting the emotion in manifests/fixes/mmew.yaml",
                            subject,
                            str(sheet),
                            row_no,
                        ),
                    )
                )
                continue
            out.add(*finish_clip(clip, frames, sheet=sheet, row=row_no))
        return out

    @staticmethod
    def _clip_folder(frames_root: Path, emotion_dirs: dict[str, Path], emotion: str, filename: str) -> Path:
        """``<emotion>/<filename>``; if absent, the same clip folder under another emotion folder."""
        first = emotion_dirs.get(emotion.lower(), frames_root / emotion) / filename
        if first.is_dir():
            return first
        for d in emotion_dirs.values():
            if (d / filename).is_dir():
                return d / filename
        return first
