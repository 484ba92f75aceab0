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
* MEB swaps the AU columns of two rows known only by position: see ``manifests/fixes/fourdme.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.common import FrameLister, finish_clip, fixed_row_values, pick_dir, read_rows, row_issue
from mepipe.datasets.sheets import cell_str, find_annotation
from mepipe.records import ClipIssue, ClipRecord

CODING_FILES = ("4DME_Labelling_Micro_release v1.xlsx", "4DME_Labelling_Micro_release_v1.xlsx")
FRAME_DIRS = ("gray_micro", "4DME/gray_micro")
COLUMNS = ("sub_ID", "fold_name", "Emotion", "Onset", "Apex", "Offset", "AUs")
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
class FourDmeAdapter(DatasetAdapter):
    """4DME micro-expression clips, 2D grayscale frames (41 subjects, 267 clips).

    Options:
        annotation: label file name or path (default ``4DME_Labelling_Micro_release v1.xlsx``).
        frames_dir: the ``gray_micro`` folder (default ``gray_micro`` under the root).
        fps: frame rate to record (default 60, see :data:`FPS`).
        fixes: alternative fix table (default ``manifests/fixes/fourdme.yaml``).
    """

    option_names = ("annotation", "frames_dir", "fps", "fixes")

    def scan(self) -> ScanResult:
        sheet = find_annotation(self.root, self.options.get("annotation"), CODING_FILES, self.name)
        frames_root = pick_dir(self.root, self.options.get("frames_dir"), FRAME_DIRS, what="4DME gray_micro")
        fps = float(self.options.get("fps", FPS))  # type: ignore[arg-type]
        frames = FrameLister()
        out = ScanResult()
        for row_no, row in read_rows(sheet, COLUMNS, MULTI):
            raw_subject = cell_str(row["sub_ID"])
            try:
                subject = subject_id(row["sub_ID"])
            except ValueError as exc:
                out.failures.append(
                    (None, row_issue(self.name, sheet, row_no, "bad_subject", f"{exc}; fix the sub_ID cell"))
                )
                continue
            fold = cell_str(row["fold_name"])
            clip_id = f"{subject}/{fold}"
            fixed = fixed_row_values(
                self.name,
                sheet,
                row_no,
                subject,
                fold,
                clip_id,
                {
                    "onset": row["Onset"],
                    "apex": row["Apex"],
                    "offset": row["Offset"],
                    "emotion": row["Emotion"],
                    "aus": row["AUs"],
                },
                ("Onset", "Apex", "Offset"),
                self.options.get("fixes"),
            )
            if fixed is None:  # dropped by a fix
                continue
            if isinstance(fixed, ClipIssue):
                out.failures.append((None, fixed))
                continue
            extra = {"row": str(row_no)}
            extra.update({f"multi_{k.lower()}": cell_str(row[k]) for k in MULTI if cell_str(row[k])})
            clip = ClipRecord(
                dataset=self.name,
                subject=subject,
                clip_id=clip_id,
                source_kind="images",
                source_path=str(self._subject_dir(frames_root, raw_subject, subject) / fold),
                onset=fixed.onset,
                apex=fixed.apex,
                offset=fixed.offset,
                keyframe_source="annotated" if fixed.apex is not None else "apex_missing",
                emotion_raw=fixed.emotion,
                aus_raw=fixed.aus,
                fps=fps,
                expression_type="micro",
                fixes=fixed.fixes,
                extra=extra,
            )
            out.add(*finish_clip(clip, frames, sheet=sheet, row=row_no))
        return out

    @staticmethod
    def _subject_dir(frames_root: Path, raw: str, canonical: str) -> Path:
        for name in (raw, canonical):
            if (frames_root / name).is_dir():
                return frames_root / name
        return frames_root / raw
