"""4DME (2D grayscale micro clips), as distributed: ``gray_micro/{sub_ID}/{fold_name}/`` +
``4DME_Labelling_Micro_release v1.xlsx``.

Quirks handled here (``shared/reference/datasets.md`` section 2, 4DME):

* Columns by name: ``sub_ID, fold_name, Emotion, Onset, Apex, Offset, AUs``. The sheet also carries
  multi-label emotion columns (``Positive, Negative, Surprise, Repression, Others``); when present
  they are kept in ``extra`` (``multi_<name>``) so multi-label schemes can use them later.
* AUs marked ``(k)`` are kept verbatim in ``aus_raw`` (MEB zeroes them; that is an AU-mapping
  decision, not an annotation fix).
* Subject folders use the ``sub_ID`` text as written; a bare number is looked up as written and
  zero-padded, and canonicalised to two digits (``1`` -> ``01``).
* The extras file (``..._extras_release v1.xlsx``, self-report/video emotions) is not read.
* MEB swaps the label columns of two rows known only by position: not ported, see
  ``manifests/fixes/fourdme.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mepipe.datasets.base import register_adapter
from mepipe.datasets.rowscan import Columns, SheetAdapter, SheetRow
from mepipe.datasets.sheets import cell_str

MULTI = ("Positive", "Negative", "Surprise", "Repression", "Others")
#: Frame rate of the 2D grayscale camera as the 4DME paper gives it; not verified against the files
#: here -- override with ``dataset.options.fps`` if your copy says otherwise.
FPS = 60.0


def subject_id(value: object) -> str:
    """Bare numbers are zero-padded (``1`` -> ``01``); text ids are kept as written (``S01``)."""
    text = cell_str(value)
    if not text:
        raise ValueError("sub_ID is empty")
    return f"{int(text):02d}" if text.isdigit() else text


@register_adapter("fourdme")
class FourDmeAdapter(SheetAdapter):
    """4DME micro-expression clips, 2D grayscale frames (41 subjects, 267 clips).

    Options:
        annotation: label file name or path (default ``4DME_Labelling_Micro_release v1.xlsx``).
        frames_dir: the ``gray_micro`` folder (default ``gray_micro`` under the root).
        fps: frame rate to record (default 60, see :data:`FPS`).
        fixes: alternative fix table (default ``manifests/fixes/fourdme.yaml``).
    """

    coding_files = ("4DME_Labelling_Micro_release v1.xlsx", "4DME_Labelling_Micro_release_v1.xlsx")
    frame_dirs = ("gray_micro", "4DME/gray_micro")
    frames_what = "4DME gray_micro"
    columns = Columns("sub_ID", "fold_name", "Onset", "Apex", "Offset", "Emotion", "AUs")
    optional_columns = MULTI
    extra_columns = {k: f"multi_{k.lower()}" for k in MULTI}
    option_names = ("annotation", "frames_dir", "fps", "fixes")

    def subject_id(self, value: Any) -> str:
        return subject_id(value)

    def prepare(self) -> None:
        self.fps = float(self.options.get("fps", FPS))  # type: ignore[arg-type]

    def source(self, row: SheetRow, values: Mapping[str, Any]) -> Path:
        """``<sub_ID as written>/<fold_name>``, else under the canonical (zero-padded) id."""
        raw = row.cell(self.columns.subject)
        subject_dir = next(
            (self.frames_root / n for n in (raw, row.subject) if (self.frames_root / n).is_dir()),
            self.frames_root / raw,
        )
        return subject_dir / row.name
