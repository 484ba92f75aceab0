"""SAMM long videos (macro and micro), as distributed: ``SAMM_longvideos/006_1/006_1_0001.jpg`` +
``SAMM_LongVideos_V2_Release.xlsx``.

Quirks handled here (``shared/reference/datasets.md`` section 3, SAMM-LV):

* The sheet starts with a **preamble** (about 10 rows of prose) before the header; the header row is
  detected (first row holding ``Subject`` and ``Filename``), not hard-coded.
* Columns by name: ``Subject, Filename, Inducement Code, Onset, Apex, Offset, Duration, Type,
  Action Units, Notes``. ``Type`` is ``Macro`` or ``Micro - 1/2``: the former becomes
  ``expression_type="macro"`` (a pre-training source), the latter ``micro``.
* ``Filename`` is ``<subject>_<video>_<n>`` (``006_1_2``); the recording folder is the first two
  parts (``006_1``), which holds the whole video and is cut to the annotated interval.
* An apex of ``-1`` (or blank) is missing; an unknown offset cuts the clip at the apex (noted in
  ``extra["offset"]``; the keyframe stage then reports the offset as estimated).
* There is **no emotion** column. The option ``emotions`` points at a SAMM micro coding file; its
  ``Estimated Emotion`` is then copied to rows with the same ``Filename`` (as MEAN merges them).
* Subject ids are canonicalised to ``006``. 200 fps.
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
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue, ClipRecord

CODING_FILES = ("SAMM_LongVideos_V2_Release.xlsx",)
FRAME_DIRS = ("SAMM_longvideos", "SAMM_LongVideos", "rawpic", ".")
COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "Type", "Action Units")
OPTIONAL = ("Inducement Code", "Duration", "Notes")
FPS = 200.0


def expression_kind(value: object) -> str | None:
    """``Macro`` -> ``macro``; ``Micro - 1/2`` (any ``Micro...``) -> ``micro``; else ``None``."""
    text = cell_str(value).lower()
    if text.startswith("macro"):
        return "macro"
    if text.startswith("micro"):
        return "micro"
    return None


def _emotions(path: Path) -> dict[str, str]:
    """``Filename -> Estimated Emotion`` from a SAMM micro coding file (either copy)."""
    header = find_header_row(path, ("Filename", "Estimated Emotion"))
    return {
        cell_str(r["Filename"]): cell_str(r["Estimated Emotion"])
        for _, r in read_rows(path, ("Filename", "Estimated Emotion"), header_row=header)
    }


@register_adapter("samm_lv")
class SammLvAdapter(DatasetAdapter):
    """SAMM long videos: macro and micro intervals (200 fps, 2040x1088 grayscale).

    Options:
        annotation: sheet name or path (default ``SAMM_LongVideos_V2_Release.xlsx``).
        frames_dir: folder holding the ``006_1/`` recordings (default ``SAMM_longvideos``).
        emotions: a SAMM micro coding file to take emotions from (optional).
        types: ``all`` (default), ``micro`` or ``macro``.
        fixes: alternative fix table (default ``manifests/fixes/samm_lv.yaml``).
    """

    option_names = ("annotation", "frames_dir", "emotions", "types", "fixes")

    def scan(self) -> ScanResult:
        types = str(self.options.get("types", "all"))
        if types not in ("all", "micro", "macro"):
            raise ConfigError(
                f"samm_lv: types {types!r} must be all, micro or macro; fix dataset.options.types"
            )
        sheet = find_annotation(self.root, self.options.get("annotation"), CODING_FILES, self.name)
        header = find_header_row(sheet, ("Subject", "Filename"))  # after the prose preamble
        emotions: dict[str, str] = {}
        if self.options.get("emotions"):
            path = Path(str(self.options["emotions"]))
            path = path if path.is_absolute() else self.root / path
            if not path.is_file():
                raise AnnotationError(
                    f"samm_lv: {path} (dataset.options.emotions) not found; point it at a SAMM "
                    "micro coding file such as SAMM_Micro_FACS_Codes_v2.xlsx, or remove the option"
                )
            emotions = _emotions(path)
        frames_root = pick_dir(self.root, self.options.get("frames_dir"), FRAME_DIRS, what="SAMM long-video")
        frames = FrameLister()
        out = ScanResult()
        for row_no, row in read_rows(sheet, COLUMNS, OPTIONAL, header_row=header):
            filename = cell_str(row["Filename"])
            try:
                subject = f"{digits_of(row['Subject']):03d}"
            except ValueError as exc:
                out.failures.append(
                    (None, row_issue(self.name, sheet, row_no, "bad_subject", f"{exc}; fix the Subject cell"))
                )
                continue
            clip_id = f"{subject}/{filename}"
            kind = expression_kind(row["Type"])
            if kind is None:
                out.failures.append(
                    (
                        None,
                        row_issue(
                            self.name,
                            sheet,
                            row_no,
                            "bad_value",
                            f"Type {row['Type']!r} is neither Macro nor Micro; fix the cell",
                            clip_id=clip_id,
                            subject=subject,
                        ),
                    )
                )
                continue
            if types != "all" and kind != types:
                continue  # excluded by dataset.options.types
            parts = filename.split("_")
            if len(parts) < 3:
                out.failures.append(
                    (
                        None,
                        row_issue(
                            self.name,
                            sheet,
                            row_no,
                            "bad_value",
                            f"Filename {filename!r} is not <subject>_<video>_<n>; fix the cell",
                            clip_id=clip_id,
                            subject=subject,
                        ),
                    )
                )
                continue
            # An unknown offset (``-1``/blank) is allowed here: the clip is then cut at the apex.
            fixed = fixed_row_values(
                self.name,
                sheet,
                row_no,
                subject,
                filename,
                clip_id,
                {
                    "onset": row["Onset"],
                    "apex": row["Apex"],
                    "offset": row["Offset"],
                    "emotion": emotions.get(filename, ""),
                    "aus": row["Action Units"],
                },
                ("Onset", "Apex", "Offset"),
                self.options.get("fixes"),
                optional=("apex", "offset"),
            )
            if fixed is None:  # dropped by a fix
                continue
            if isinstance(fixed, ClipIssue):
                out.failures.append((None, fixed))
                continue
            if fixed.offset is None and fixed.apex is None:
                out.failures.append(
                    (
                        None,
                        row_issue(
                            self.name,
                            sheet,
                            row_no,
                            "bad_value",
                            "neither Offset nor Apex is annotated, so the interval has "
                            "no end; add a fix with the offset",
                            clip_id=clip_id,
                            subject=subject,
                        ),
                    )
                )
                continue
            source = "annotated" if fixed.apex is not None else "apex_missing"
            extra = {"row": str(row_no), "type": cell_str(row["Type"])}
            if fixed.offset is None:
                extra["offset"] = "unknown; clip cut at the apex"
            extra.update(
                {k.lower().replace(" ", "_"): cell_str(row[k]) for k in OPTIONAL if cell_str(row[k])}
            )
            clip = ClipRecord(
                dataset=self.name,
                subject=subject,
                clip_id=clip_id,
                source_kind="images",
                source_path=str(frames_root / "_".join(parts[:2])),
                onset=fixed.onset,
                apex=fixed.apex,
                offset=fixed.offset,
                keyframe_source=source,
                emotion_raw=fixed.emotion,
                aus_raw=fixed.aus,
                fps=FPS,
                expression_type=kind,
                fixes=fixed.fixes,
                extra=extra,
            )
            out.add(*finish_clip(clip, frames, sheet=sheet, row=row_no, end_at_apex=True))
        return out
