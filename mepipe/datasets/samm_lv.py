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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mepipe.datasets.base import register_adapter
from mepipe.datasets.common import digits_of, find_header_row, read_rows
from mepipe.datasets.rowscan import Columns, RowProblem, SheetAdapter, SheetRow
from mepipe.datasets.sheets import cell_str
from mepipe.errors import AnnotationError

OPTIONAL = ("Inducement Code", "Duration", "Notes")


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
class SammLvAdapter(SheetAdapter):
    """SAMM long videos: macro and micro intervals (200 fps, 2040x1088 grayscale).

    Options:
        annotation: sheet name or path (default ``SAMM_LongVideos_V2_Release.xlsx``).
        frames_dir: folder holding the ``006_1/`` recordings (default ``SAMM_longvideos``).
        emotions: a SAMM micro coding file to take emotions from (optional).
        types: ``all`` (default), ``micro`` or ``macro``.
        fixes: alternative fix table (default ``manifests/fixes/samm_lv.yaml``).
    """

    coding_files = ("SAMM_LongVideos_V2_Release.xlsx",)
    frame_dirs = ("SAMM_longvideos", "SAMM_LongVideos", "rawpic", ".")
    frames_what = "SAMM long-video"
    columns = Columns("Subject", "Filename", "Onset", "Apex", "Offset", None, "Action Units")
    required_columns = ("Type",)
    optional_columns = OPTIONAL
    extra_columns = {c: c.lower().replace(" ", "_") for c in OPTIONAL}
    header_row = None  # after the prose preamble: detected
    optional_keyframes = ("apex", "offset")  # an unknown offset (-1/blank) cuts the clip at the apex
    end_at_apex = True
    fps = 200.0
    option_names = ("annotation", "frames_dir", "emotions", "types", "fixes")

    def subject_id(self, value: Any) -> str:
        return f"{digits_of(value):03d}"

    def prepare(self) -> None:
        self.emotions: dict[str, str] = {}
        if self.options.get("emotions"):
            path = Path(str(self.options["emotions"]))
            path = path if path.is_absolute() else self.root / path
            if not path.is_file():
                raise AnnotationError(
                    f"samm_lv: {path} (dataset.options.emotions) not found; point it at a SAMM "
                    "micro coding file such as SAMM_Micro_FACS_Codes_v2.xlsx, or remove the option"
                )
            self.emotions = _emotions(path)

    def kind(self, row: SheetRow) -> str | None:
        kind = expression_kind(row.cells["Type"])
        if kind is None:
            raise RowProblem(
                "bad_value", f"Type {row.cells['Type']!r} is neither Macro nor Micro; fix the cell"
            )
        return kind

    def annotation(self, row: SheetRow) -> dict[str, Any]:
        return {**super().annotation(row), "emotion": self.emotions.get(row.name, "")}

    def source(self, row: SheetRow, values: Mapping[str, Any]) -> Path:
        parts = row.name.split("_")
        if len(parts) < 3:
            raise RowProblem("bad_value", f"Filename {row.name!r} is not <subject>_<video>_<n>; fix the cell")
        return self.frames_root / "_".join(parts[:2])

    def extra(self, row: SheetRow) -> dict[str, str]:
        return {**super().extra(row), "type": row.cell("Type")}
