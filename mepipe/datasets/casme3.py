"""CAS(ME)^3 parts A and C, as distributed.

Part A (``casme3_a``): ``part_A/data/part_A_split/part_A/spNO.1/a/color/355.jpg`` +
``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (columns ``Subject, Filename, Onset, Apex, Offset, AU,
Objective class, emotion``) or the legacy-Excel ``CAS(ME)3_part_A_v2.xls`` (read through xlrd; adds
``Expression type``).

Quirks handled here (``shared/reference/datasets.md`` section 2, CAS(ME)^3):

* A ``Filename`` (``a``) is a whole recording, and one recording holds several expressions, so the
  same ``(Subject, Filename)`` **repeats**. Clip ids are disambiguated in sheet order: the first keeps
  the name, later ones get ``2``, ``3`` ... (``spNO.1/a``, ``spNO.1/a2``; MEB's convention). All of
  them read the frames of the folder ``a`` (kept in ``extra["folder"]``); fixes are keyed by the
  disambiguated name. A row repeating another one exactly (same recording, onset and offset) is a
  ``duplicate_clip``, not a second expression.
* Some extracted copies name subject folders ``spNo.1`` while the labels say ``spNO.1``: folders are
  looked up **case-insensitively**, and the canonical subject id is the label spelling ``spNO.<n>``.
* Frames ``color/<n>.jpg`` are numbered by absolute frame index (the "JpgIndex" labels use them).
  The folder holds the whole recording and is cut to the annotated interval. Some rows have an apex
  before the onset ("dead apex"); they are reported (``apex_outside_clip``), never guessed.
* With ``Expression type`` present, ``Macro-expression`` rows become ``expression_type="macro"``.
* MEB's six onset/apex/offset corrections are known only by row position of the JpgIndex ``.xlsx``:
  ``manifests/fixes/casme3_a.yaml`` anchors them there.

Part C (``casme3_c``): ``CAS(ME)3_part_C_ME.xlsx`` with ``sub, count, au, onset, offset`` and frames
``ME_C/{sub:02d}/{count}/color/``. It has **no apex** and **no emotion** column (AU-only labels; the
AUs are written with commas, ``4,7``, and kept verbatim -- except that a full-width comma ``，``, a
typing slip MEB corrects in one row, is written as ``,``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mepipe.datasets.base import register_adapter
from mepipe.datasets.common import digits_of, subfolders_by_lower_name
from mepipe.datasets.rowscan import Columns, RowProblem, SheetAdapter, SheetRow
from mepipe.datasets.sheets import cell_str

FPS = 30.0
A_TYPES = {"micro-expression": "micro", "macro-expression": "macro"}


def subject_a(value: object) -> str:
    """``"spNO.1"`` / ``"spNo.1"`` / ``1`` -> ``"spNO.1"``."""
    return f"spNO.{digits_of(value)}"


@register_adapter("casme3_a")
class Casme3AAdapter(SheetAdapter):
    """CAS(ME)^3 part A micro- (and, with the v2 .xls, macro-) expressions (30 fps, 1280x720).

    Options:
        annotation: label file name or path (default: the first of :attr:`coding_files` found).
        frames_dir: the folder holding ``spNO.*`` subject folders (default: searched under the root).
        types: ``all`` (default), ``micro`` or ``macro`` (only with an ``Expression type`` column).
        fixes: alternative fix table (default ``manifests/fixes/casme3_a.yaml``).
    """

    coding_files = (
        "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        "CAS(ME)3_part_A_v2.xls",
        "CAS(ME)3_part_A_v2.xlsx",
    )
    frame_dirs = (
        "part_A/data/part_A_split/part_A",
        "data/part_A_split/part_A",
        "part_A_split/part_A",
        "part_A",
        ".",
    )
    frames_what = "CAS(ME)^3 part A"
    columns = Columns("Subject", "Filename", "Onset", "Apex", "Offset", "emotion", "AU")
    optional_columns = ("Objective class", "Expression type")
    extra_columns = {"Objective class": "objective_class"}
    repeated_names = True
    fps = FPS
    option_names = ("annotation", "frames_dir", "types", "fixes")

    def subject_id(self, value: Any) -> str:
        return subject_a(value)

    def accept_frames_root(self, folder: Path) -> bool:
        return any(d.is_dir() and d.name.lower().startswith("spno.") for d in folder.iterdir())

    def prepare(self) -> None:
        self._subject_dirs: dict[str, Path] | None = None

    def kind(self, row: SheetRow) -> str | None:
        etype = row.cell("Expression type")  # only in the v2 .xls copy
        if not etype:
            return "micro"
        if etype.lower() not in A_TYPES:
            raise RowProblem(
                "bad_value",
                f"Expression type {etype!r} is not Micro-expression or Macro-expression; fix the cell",
            )
        return A_TYPES[etype.lower()]

    def _subject_dir(self, subject: str) -> Path:
        if self._subject_dirs is None:  # spNo. vs spNO.: look subject folders up by lower-case name
            self._subject_dirs = subfolders_by_lower_name(self.frames_root)
        return self._subject_dirs.get(subject.lower(), self.frames_root / subject)

    def source(self, row: SheetRow, values: Mapping[str, Any]) -> Path:
        return self._subject_dir(row.subject) / row.cell(self.columns.name) / "color"

    def extra(self, row: SheetRow) -> dict[str, str]:
        out = {**super().extra(row), "folder": row.cell(self.columns.name)}
        subject_dir = self._subject_dir(row.subject)
        if subject_dir.name != row.subject:
            out["subject_folder"] = subject_dir.name
        return out


@register_adapter("casme3_c")
class Casme3CAdapter(SheetAdapter):
    """CAS(ME)^3 part C micro-expressions (30 fps; AU labels only, no apex, no emotion).

    Options:
        annotation: label file name or path (default ``CAS(ME)3_part_C_ME.xlsx``).
        frames_dir: the folder holding ``01/<count>/color`` (default ``ME_C`` under the root).
        fixes: alternative fix table (default ``manifests/fixes/casme3_c.yaml``).
    """

    coding_files = ("CAS(ME)3_part_C_ME.xlsx",)
    frame_dirs = ("ME_C", "part_C/ME_C", "part_C", ".")
    frames_what = "CAS(ME)^3 part C"
    columns = Columns("sub", "count", "onset", None, "offset", None, "au")
    path_template = "{subject}/{name}/color"
    fps = FPS

    def subject_id(self, value: Any) -> str:
        return f"{digits_of(value):02d}"  # folder names are zero-padded: ME_C/01/

    def annotation(self, row: SheetRow) -> dict[str, Any]:
        # MEB (Casme3C.data_frame) replaces the full-width comma of one row's AU cell ("sample 16");
        # it is never meaningful, so every row gets the ASCII comma.
        values = super().annotation(row)
        values["aus"] = cell_str(values["aus"]).replace("\uff0c", ",")
        return values
