"""CASME II, as distributed: ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` + the coding sheet.

Quirks handled here (see ``../shared/reference/datasets.md`` section 2):

* The coding file exists in several versions (``CASME2-coding-20140508.xlsx`` is the original;
  ``-20190701``, ``-updated`` and the legacy-Excel ``CASME2_label_Ver_2.xls`` circulate; ``.xls`` is
  read through xlrd). We read columns **by name** (``Subject, Filename, OnsetFrame, ApexFrame,
  OffsetFrame, Action Units, Estimated Emotion``), so the two blank-header columns (``Unnamed: 2``,
  ``Unnamed: 6``) and column order do not matter.
* ``Subject`` is an integer (1..26); the folder is ``sub{subject:02d}``.
* ``ApexFrame`` is ``/`` for some rows: the apex is then *missing* (estimated later by the keyframe
  stage, recorded as such in the manifest) unless a fix sets it -- ``manifests/fixes/casme2.yaml``
  carries MEB's flow-estimated apexes and its offset correction, anchored to their rows.
* Frame files are numbered by absolute video frame (``img46.jpg``), matching the annotation; they are
  sorted numerically (``img100`` after ``img99``).
* AU strings keep their laterality prefixes (``R12``, ``L14``) verbatim in ``aus_raw``.
"""

from __future__ import annotations

from typing import Any

from mepipe.datasets.base import register_adapter
from mepipe.datasets.common import digits_of
from mepipe.datasets.rowscan import Columns, SheetAdapter
from mepipe.datasets.sheets import cell_int

#: Cells meaning "no apex" in ``ApexFrame`` (the sheet writes ``/``). Narrower than
#: :data:`~mepipe.datasets.sheets.MISSING_MARKS` on purpose: an apex of ``-1`` is reported, not dropped.
APEX_MISSING = ("/", "", "-")


def subject_id(value: object) -> str:
    """``1`` / ``"1"`` / ``"sub01"`` -> ``"sub01"``."""
    return f"sub{digits_of(value):02d}"


@register_adapter("casme2")
class Casme2Adapter(SheetAdapter):
    """CASME II micro-expression clips (200 fps, 640x480, 26 subjects).

    Options:
        annotation: coding file name or path (default: the first known version found in the root).
        frames_dir: frame folder under the root (default: the first of ``CASME2_RAW_selected``,
            ``CASME2-RAW``, ``CASME2_RAW``, ``Cropped`` that exists).
        fixes: path of an alternative fix table (default ``manifests/fixes/casme2.yaml``).
    """

    coding_files = (
        "CASME2-coding-20140508.xlsx",
        "CASME2-coding-20190701.xlsx",
        "CASME2-coding-updated.xlsx",
        "CASME2_label_Ver_2.xls",
    )
    frame_dirs = ("CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped")
    frames_what = "CASME II frame"
    columns = Columns(
        "Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion", "Action Units"
    )
    fps = 200.0

    def subject_id(self, value: Any) -> str:
        return subject_id(value)

    def keyframe(self, v: Any, column: str, *, missing_ok: bool) -> int | None:
        """Only the apex may be missing, and only as :data:`APEX_MISSING`."""
        return cell_int(v, column, missing=APEX_MISSING if missing_ok else None)
