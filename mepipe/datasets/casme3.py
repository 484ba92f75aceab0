"""CAS(ME)^3 parts A and C, as distributed.

Part A (``casme3_a``): ``part_A/data/part_A_split/part_A/spNO.1/a/color/355.jpg`` +
``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (columns ``Subject, Filename, Onset, Apex, Offset, AU,
Objective class, emotion``) or ``CAS(ME)3_part_A_v2.xls`` (adds ``Expression type``).

Quirks handled here (``shared/reference/datasets.md`` section 2, CAS(ME)^3):

* A ``Filename`` (``a``) is a whole recording, and one recording holds several expressions, so the
  same ``(Subject, Filename)`` **repeats**. Clip ids are disambiguated in sheet order: the first keeps
  the name, later ones get ``2``, ``3`` ... (``spNO.1/a``, ``spNO.1/a2``; MEB's convention). All of
  them read the frames of the folder ``a`` (kept in ``extra["folder"]``); fixes are keyed by the
  disambiguated name.
* Some extracted copies name subject folders ``spNo.1`` while the labels say ``spNO.1``: folders are
  looked up **case-insensitively**, and the canonical subject id is the label spelling ``spNO.<n>``.
* Frames ``color/<n>.jpg`` are numbered by absolute frame index (the "JpgIndex" labels use them).
  The folder holds the whole recording and is cut to the annotated interval. Some rows have an apex
  before the onset ("dead apex"); they are reported (``apex_outside_clip``), never guessed.
* With ``Expression type`` present, ``Macro-expression`` rows become ``expression_type="macro"``.
* MEB's six onset/apex/offset corrections are known only by row position: see
  ``manifests/fixes/casme3_a.yaml``.

Part C (``casme3_c``): ``CAS(ME)3_part_C_ME.xlsx`` with ``sub, count, au, onset, offset`` and frames
``ME_C/{sub:02d}/{count}/color/``. It has **no apex** and **no emotion** column (AU-only labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.common import (
    FrameLister,
    digits_of,
    disambiguate,
    finish_clip,
    fixed_row_values,
    pick_dir,
    read_rows,
    row_issue,
    subfolders_by_lower_name,
)
from mepipe.datasets.sheets import cell_str, find_annotation
from mepipe.errors import ConfigError
from mepipe.records import ClipIssue, ClipRecord

FPS = 30.0
A_FILES = ("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "CAS(ME)3_part_A_v2.xls", "CAS(ME)3_part_A_v2.xlsx")
A_FRAME_DIRS = (
    "part_A/data/part_A_split/part_A",
    "data/part_A_split/part_A",
    "part_A_split/part_A",
    "part_A",
    ".",
)
A_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion")
A_OPTIONAL = ("Objective class", "Expression type")
A_TYPES = {"micro-expression": "micro", "macro-expression": "macro"}
C_FILES = ("CAS(ME)3_part_C_ME.xlsx",)
C_FRAME_DIRS = ("ME_C", "part_C/ME_C", "part_C", ".")
C_COLUMNS = ("sub", "count", "au", "onset", "offset")


def subject_a(value: object) -> str:
    """``"spNO.1"`` / ``"spNo.1"`` / ``1`` -> ``"spNO.1"``."""
    return f"spNO.{digits_of(value)}"


def _has_sp_folders(p: Path) -> bool:
    return any(d.is_dir() and d.name.lower().startswith("spno.") for d in p.iterdir())


@register_adapter("casme3_a")
class Casme3AAdapter(DatasetAdapter):
    """CAS(ME)^3 part A micro- (and, with the v2 .xls, macro-) expressions (30 fps, 1280x720).

    Options:
        annotation: label file name or path (default: the first of :data:`A_FILES` found).
        frames_dir: the folder holding ``spNO.*`` subject folders (default: searched under the root).
        types: ``all`` (default), ``micro`` or ``macro`` (only with an ``Expression type`` column).
        fixes: alternative fix table (default ``manifests/fixes/casme3_a.yaml``).
    """

    option_names = ("annotation", "frames_dir", "types", "fixes")

    def scan(self) -> ScanResult:
        types = str(self.options.get("types", "all"))
        if types not in ("all", "micro", "macro"):
            raise ConfigError(
                f"casme3_a: types {types!r} must be all, micro or macro; fix dataset.options.types"
            )
        sheet = find_annotation(self.root, self.options.get("annotation"), A_FILES, self.name)
        frames_root = pick_dir(
            self.root,
            self.options.get("frames_dir"),
            A_FRAME_DIRS,
            what="CAS(ME)^3 part A",
            accept=_has_sp_folders,
        )
        # spNo. vs spNO.: look subject folders up by lower-case name.
        subject_dirs = subfolders_by_lower_name(frames_root)
        rows = list(read_rows(sheet, A_COLUMNS, A_OPTIONAL))
        frames = FrameLister()
        out = ScanResult()
        keyed: list[tuple[int, dict[str, Any], str]] = []
        for row_no, row in rows:
            try:
                keyed.append((row_no, row, subject_a(row["Subject"])))
            except ValueError as exc:
                out.failures.append(
                    (None, row_issue(self.name, sheet, row_no, "bad_subject", f"{exc}; fix the Subject cell"))
                )
        names = disambiguate((s, cell_str(r["Filename"])) for _, r, s in keyed)
        for (row_no, row, subject), name in zip(keyed, names, strict=True):
            folder_name = cell_str(row["Filename"])
            etype = cell_str(row["Expression type"])  # only in the v2 .xls copy
            kind = A_TYPES.get(etype.lower()) if etype else "micro"
            if kind is None:
                out.failures.append(
                    (
                        None,
                        row_issue(
                            self.name,
                            sheet,
                            row_no,
                            "bad_value",
                            f"Expression type {etype!r} is not Micro-expression or Macro-expression; fix the cell",
                            clip_id=f"{subject}/{name}",
                            subject=subject,
                        ),
                    )
                )
                continue
            if types != "all" and kind != types:
                continue  # excluded by dataset.options.types
            clip_id = f"{subject}/{name}"
            fixed = fixed_row_values(
                self.name,
                sheet,
                row_no,
                subject,
                name,
                clip_id,  # fixes are keyed by the disambiguated name
                {
                    "onset": row["Onset"],
                    "apex": row["Apex"],
                    "offset": row["Offset"],
                    "emotion": row["emotion"],
                    "aus": row["AU"],
                },
                ("Onset", "Apex", "Offset"),
                self.options.get("fixes"),
            )
            if fixed is None:  # dropped by a fix
                continue
            if isinstance(fixed, ClipIssue):
                out.failures.append((None, fixed))
                continue
            subject_dir = subject_dirs.get(subject.lower(), frames_root / subject)
            extra = {"row": str(row_no), "folder": folder_name}
            if subject_dir.name != subject:
                extra["subject_folder"] = subject_dir.name
            if cell_str(row["Objective class"]):
                extra["objective_class"] = cell_str(row["Objective class"])
            clip = ClipRecord(
                dataset=self.name,
                subject=subject,
                clip_id=clip_id,
                source_kind="images",
                source_path=str(subject_dir / folder_name / "color"),
                onset=fixed.onset,
                apex=fixed.apex,
                offset=fixed.offset,
                keyframe_source="annotated" if fixed.apex is not None else "apex_missing",
                emotion_raw=fixed.emotion,
                aus_raw=fixed.aus,
                fps=FPS,
                expression_type=kind,
                fixes=fixed.fixes,
                extra=extra,
            )
            out.add(*finish_clip(clip, frames, sheet=sheet, row=row_no))
        return out


@register_adapter("casme3_c")
class Casme3CAdapter(DatasetAdapter):
    """CAS(ME)^3 part C micro-expressions (30 fps; AU labels only, no apex, no emotion).

    Options:
        annotation: label file name or path (default ``CAS(ME)3_part_C_ME.xlsx``).
        frames_dir: the folder holding ``01/<count>/color`` (default ``ME_C`` under the root).
        fixes: alternative fix table (default ``manifests/fixes/casme3_c.yaml``).
    """

    option_names = ("annotation", "frames_dir", "fixes")

    def scan(self) -> ScanResult:
        sheet = find_annotation(self.root, self.options.get("annotation"), C_FILES, self.name)
        frames_root = pick_dir(
            self.root, self.options.get("frames_dir"), C_FRAME_DIRS, what="CAS(ME)^3 part C"
        )
        frames = FrameLister()
        out = ScanResult()
        for row_no, row in read_rows(sheet, C_COLUMNS):
            try:
                subject = f"{digits_of(row['sub']):02d}"  # folder names are zero-padded: ME_C/01/
            except ValueError as exc:
                out.failures.append(
                    (None, row_issue(self.name, sheet, row_no, "bad_subject", f"{exc}; fix the sub cell"))
                )
                continue
            count = cell_str(row["count"])
            clip_id = f"{subject}/{count}"
            # AUs are written with commas (``4,7``); keep them verbatim, mapping is a later concern.
            # No apex or emotion column: the apex stays missing unless a fix sets it.
            fixed = fixed_row_values(
                self.name,
                sheet,
                row_no,
                subject,
                count,
                clip_id,
                {
                    "onset": row["onset"],
                    "apex": None,
                    "offset": row["offset"],
                    "emotion": "",
                    "aus": row["au"],
                },
                ("onset", "apex", "offset"),
                self.options.get("fixes"),
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
                source_path=str(frames_root / subject / count / "color"),
                onset=fixed.onset,
                apex=fixed.apex,
                offset=fixed.offset,
                keyframe_source="apex_missing" if fixed.apex is None else "annotated",
                emotion_raw=fixed.emotion,
                aus_raw=fixed.aus,
                fps=FPS,
                expression_type="micro",
                fixes=fixed.fixes,
                extra={"row": str(row_no)},
            )
            out.add(*finish_clip(clip, frames, sheet=sheet, row=row_no))
        return out
