"""SMIC (HS / VIS / NIR short clips), as distributed: ``HS/s1/micro/negative/s1_ne_01/image090823.bmp``.

Quirks handled here (``shared/reference/datasets.md`` section 2, SMIC):

* There is **no official spreadsheet** for the short clips: the label is the folder
  ``micro/{negative,positive,surprise}`` and each clip folder holds exactly the onset..offset frames.
  So onset/offset are the first/last frame on disk and ``keyframe_source`` is ``folder_bounds``;
  there is **no apex** (the keyframe stage estimates it and records where it came from).
* Three cameras: ``HS`` (100 fps, 16 subjects, 164 clips), ``VIS`` and ``NIR`` (25 fps, 8 subjects,
  71 clips). The same people appear in HS and VIS/NIR, so the subject id is shared (``s01``) and all
  variants are reported under the dataset name ``smic`` with ``extra["variant"]``.
* Subject folders are ``s1``..``s20``; the canonical id is ``s01``. Clip ids keep the folder name as
  distributed (``s01/s1_ne_01``).
* A ``non_micro`` folder (when present) holds non-micro-expression clips and is not part of the set;
  a label folder other than the three under ``micro/`` is reported as ``unknown_label``.
* Frame numbers are the digits of the file name (``image090823.bmp`` -> 90823); VIS/NIR copies may
  write ``image 090823.jpg``, which parses the same.
"""

from __future__ import annotations

from pathlib import Path

from mepipe.datasets.base import DatasetAdapter, FrameLister, FrameListError, ScanResult, register_adapter
from mepipe.datasets.common import digits_of, finish_clip, pick_dir
from mepipe.datasets.fixes import apply_fixes
from mepipe.datasets.sheets import MISSING_MARKS, cell_int, cell_str
from mepipe.errors import ConfigError
from mepipe.records import ClipIssue, ClipRecord

VARIANTS = {"HS": 100.0, "VIS": 25.0, "NIR": 25.0}
LABELS = ("negative", "positive", "surprise")
PARENTS = ("", "SMIC_all_raw", "SMIC_all_cropped", "SMIC", "SMIC/SMIC_all_raw")


def subject_id(value: object) -> str:
    """``"s1"`` / ``1`` -> ``"s01"``."""
    return f"s{digits_of(value):02d}"


@register_adapter("smic")
class SmicAdapter(DatasetAdapter):
    """SMIC short micro-expression clips of one camera (``variant``).

    Options:
        variant: ``HS`` (default), ``VIS`` or ``NIR``.
        frames_dir: the folder holding ``s1/micro/...`` (default: ``<variant>`` under the root, or
            under ``SMIC_all_raw`` / ``SMIC_all_cropped``).
        fixes: alternative fix table (default ``manifests/fixes/smic.yaml``), keyed by
            (``s01``, clip folder name), e.g. to set an apex.
    """

    option_names = ("variant", "frames_dir", "fixes")

    def scan(self) -> ScanResult:
        variant = str(self.options.get("variant", "HS")).upper()
        if variant not in VARIANTS:
            raise ConfigError(
                f"smic: variant {variant!r} is not one of {list(VARIANTS)}; fix dataset.options.variant"
            )
        fps = VARIANTS[variant]
        candidates = [f"{p}/{variant}".lstrip("/") for p in PARENTS]
        if self.root.name.upper() == variant:
            candidates.insert(0, ".")
        frames_root = pick_dir(self.root, self.options.get("frames_dir"), candidates, what=f"SMIC {variant}")
        out = self.new_result(frames_root)
        frames = FrameLister(out.roots)
        for subject_dir in sorted(p for p in frames_root.iterdir() if p.is_dir()):
            try:
                subject = subject_id(subject_dir.name)
            except ValueError:
                out.fail(
                    ClipIssue(
                        self.name,
                        subject_dir.name,
                        "bad_subject",
                        f"{subject_dir}: folder name is not a SMIC subject (s1..s20); move it out of {frames_root}",
                        file=str(subject_dir),
                    )
                )
                continue
            micro = subject_dir / "micro"
            if not micro.is_dir():
                out.fail(
                    ClipIssue(
                        self.name,
                        subject,
                        "missing_folder",
                        f"{subject_dir}: no 'micro' folder; expected {subject_dir.name}/micro/<label>/<clip>/",
                        subject,
                        str(subject_dir),
                    )
                )
                continue
            for label_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
                label = label_dir.name.lower()
                for clip_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
                    self._add_clip(out, frames, clip_dir, subject, label, variant, fps)
        return out

    def _add_clip(
        self,
        out: ScanResult,
        frames: FrameLister,
        clip_dir: Path,
        subject: str,
        label: str,
        variant: str,
        fps: float,
    ) -> None:
        clip_id = f"{subject}/{clip_dir.name}"
        if label not in LABELS:
            out.fail(
                ClipIssue(
                    self.name,
                    clip_id,
                    "unknown_label",
                    f"{clip_dir}: label folder {clip_dir.parent.name!r} is not one of {list(LABELS)}; rename it",
                    subject,
                    str(clip_dir),
                )
            )
            return
        try:
            _, numbers = frames(clip_dir)
        except FrameListError:  # reported by finish_clip below
            numbers = []
        # The clip folder *is* the annotated interval: its first/last frames are onset/offset.
        values = {
            "onset": numbers[0] if numbers else None,
            "apex": None,
            "offset": numbers[-1] if numbers else None,
            "emotion": label,
            "aus": "",
        }
        values, fix_ids = apply_fixes(self.name, subject, clip_dir.name, values, self.options.get("fixes"))
        if values.get("drop"):
            return
        onset, apex, offset = (
            cell_int(values[k], k, missing=MISSING_MARKS) for k in ("onset", "apex", "offset")
        )
        clip = ClipRecord(
            dataset=self.name,
            subject=subject,
            clip_id=clip_id,
            source_kind="images",
            source_path=str(clip_dir),
            onset=onset,
            apex=apex,
            offset=offset,
            keyframe_source="folder_bounds",  # an apex set by a fix is listed in ``fixes``
            emotion_raw=cell_str(values["emotion"]),
            aus_raw=cell_str(values["aus"]),
            fps=fps,
            expression_type="micro",
            fixes=fix_ids,
            extra={"variant": variant},
        )
        out.add(*finish_clip(clip, frames))
