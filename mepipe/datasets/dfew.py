"""DFEW, as distributed: ``Clip/original/00001.mp4`` (or frames ``Clip/jpg_256/00001/``) + the split files.

Quirks handled here (``shared/reference/datasets.md`` section 3):

* Labels and folds come only from ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv``
  (header ``video_name,label``). ``video_name`` is the clip number (``1`` for ``00001``); ``label``
  is **1-based** (1 happy, 2 sad, 3 neutral, 4 angry, 5 surprise, 6 disgust, 7 fear) and is kept
  verbatim in ``emotion_raw`` (``"1"``); the ``dfew_7`` label scheme maps it late.
* Every single-labelled clip is listed once per fold (train in four, test in one); the adapter merges
  them into one clip whose ``extra`` says ``{"set_1": "train", ..., "set_5": "test"}``. A clip whose
  label differs between split files is a ``label_conflict`` failure. Clips in no split file (DFEW's
  multi-labelled clips) are not single-labelled and are left out.
* Two forms of the clips: videos (``Clip/original/<05d>.<ext>``, preferred when present) and the
  extracted frames (``Clip/jpg_256/<05d>/``, numerically sorted). ``form`` picks one.
* DFEW has no subject ids (movie clips): ``subject`` is the clip id, so every clip is its own group.
* Frame rate: videos give their own; frame folders carry none, so ``fps`` (default 25) is assumed.
"""

from __future__ import annotations

from pathlib import Path

from mepipe.datasets.base import register_adapter
from mepipe.datasets.macro import SplitListAdapter, clip_number
from mepipe.errors import AnnotationError

SPLIT_DIR = "EmoLabel_DataSplit"
FORMS = {
    "video": ("Clip/original", "Clip/clip_224x224", "original"),
    "frames": ("Clip/jpg_256", "Clip/jpg_224", "jpg_256"),
}
LABELS = ("1", "2", "3", "4", "5", "6", "7")


@register_adapter("dfew")
class DfewAdapter(SplitListAdapter):
    """DFEW in-the-wild dynamic facial expressions (single-labelled clips, 5 folds).

    Options:
        form: ``auto`` (videos if a video folder exists, else frames), ``video`` or ``frames``.
        clip_dir: the video or frame folder under the root (default: the first existing of
            ``Clip/original``, ``Clip/clip_224x224`` for videos, ``Clip/jpg_256`` for frames).
        folds: fold numbers to read (default ``[1, 2, 3, 4, 5]``); membership lands in ``extra``.
        fps: frame rate assumed for frame folders (default 25).
    """

    option_names = ("form", "clip_dir", "folds", "fps")
    sep = ","
    header = ("video_name", "label")
    default_fps = 25.0

    def lists(self) -> list[tuple[Path, str, str]]:
        files = [
            (self.root / SPLIT_DIR / f"{split}(single-labeled)" / f"set_{k}.csv", f"set_{k}", split)
            for k in self.folds()
            for split in ("train", "test")
        ]
        if not any(p.is_file() for p, _, _ in files):
            raise AnnotationError(
                f"dfew: no split file under {self.root / SPLIT_DIR}; expected e.g. {files[0][0]}. "
                "Copy EmoLabel_DataSplit from the DFEW archive into the dataset root"
            )
        return files

    def parse(self, cells: list[str]) -> tuple[str, str]:
        """``video_name`` is the clip number (``1`` for ``00001``); ``label`` is 1-based, 1..7."""
        number = clip_number(cells[0])
        label = str(int(float(cells[1])))
        if label not in LABELS:
            raise ValueError(f"label {cells[1]!r} is not 1..7")
        return f"{number:05d}", label

    def clip_root(self) -> tuple[str, Path]:
        wanted = self.options.get("clip_dir")
        return self.pick_form(FORMS, folder=str(wanted) if wanted else None)
