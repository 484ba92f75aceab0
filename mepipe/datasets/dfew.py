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

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.macro import SplitLabels, clip_number, find_video, read_delimited
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue

SPLIT_DIR = "EmoLabel_DataSplit"
VIDEO_DIRS = ("Clip/original", "Clip/clip_224x224", "original")
FRAME_DIRS = ("Clip/jpg_256", "Clip/jpg_224", "jpg_256")
N_FOLDS = 5
LABELS = ("1", "2", "3", "4", "5", "6", "7")


def split_file(root: Path, split: str, fold: int) -> Path:
    return root / SPLIT_DIR / f"{split}(single-labeled)" / f"set_{fold}.csv"


@register_adapter("dfew")
class DfewAdapter(DatasetAdapter):
    """DFEW in-the-wild dynamic facial expressions (single-labelled clips, 5 folds).

    Options:
        form: ``auto`` (videos if a video folder exists, else frames), ``video`` or ``frames``.
        clip_dir: the video or frame folder under the root (default: the first existing of
            ``Clip/original``, ``Clip/clip_224x224`` for videos, ``Clip/jpg_256`` for frames).
        folds: fold numbers to read (default ``[1, 2, 3, 4, 5]``); membership lands in ``extra``.
        fps: frame rate assumed for frame folders (default 25).
    """

    expression_type = "macro"
    option_names = ("form", "clip_dir", "folds", "fps")

    def scan(self) -> ScanResult:
        form, clip_root = self._clip_root()
        folds = [int(k) for k in (self.options.get("folds") or range(1, N_FOLDS + 1))]
        fps = float(self.options.get("fps", 25.0))
        out = ScanResult()
        gathered = SplitLabels(self.name)
        files = [(split, k, split_file(self.root, split, k)) for k in folds for split in ("train", "test")]
        present = [f for f in files if f[2].is_file()]
        if not present:
            raise AnnotationError(
                f"dfew: no split file under {self.root / SPLIT_DIR}; expected e.g. {files[0][2]}. "
                "Copy EmoLabel_DataSplit from the DFEW archive into the dataset root"
            )
        for split, fold, path in present:
            rows = read_delimited(path, sep=",", header=True)
            first = next(rows, None)
            if first is None or [c.lower() for c in first[1][:2]] != ["video_name", "label"]:
                raise AnnotationError(
                    f"{path}: expected the header 'video_name,label', found {first and first[1]}; "
                    "is this the split file as distributed?"
                )
            for line, cells in rows:
                try:
                    number = clip_number(cells[0])
                    label = str(int(float(cells[1])))
                    if label not in LABELS:
                        raise ValueError(f"label {cells[1]!r} is not 1..7")
                except (ValueError, IndexError) as exc:
                    out.failures.append(
                        (
                            None,
                            ClipIssue(
                                self.name,
                                f"row{line}",
                                "bad_value",
                                f"{path} line {line}: {exc}; fix or remove the row",
                                file=str(path),
                                row=line,
                            ),
                        )
                    )
                    continue
                gathered.add(out, f"{number:05d}", label, fold, split, path, line)
        gathered.emit(out, form, clip_root, fps)
        return out

    def _clip_root(self) -> tuple[str, Path]:
        form = str(self.options.get("form", "auto"))
        if form not in ("auto", "video", "frames"):
            raise ConfigError(f"dfew: form {form!r} is not one of auto, video, frames (dataset.options.form)")
        wanted = self.options.get("clip_dir")
        if wanted:
            folder = self.root / str(wanted)
            if not folder.is_dir():
                raise ConfigError(f"dfew: clip_dir {folder} does not exist (dataset.options.clip_dir)")
            if form == "auto":
                form = (
                    "video"
                    if any(find_video(folder, p.stem) for p in list(folder.iterdir())[:20])
                    else "frames"
                )
            return form, folder
        candidates = [("video", d) for d in VIDEO_DIRS] + [("frames", d) for d in FRAME_DIRS]
        for kind, d in candidates:
            if (form in ("auto", kind)) and (self.root / d).is_dir():
                return kind, self.root / d
        raise ConfigError(
            f"dfew: no clip folder under {self.root}; expected one of {list(VIDEO_DIRS)} (videos) or "
            f"{list(FRAME_DIRS)} (frames), or set dataset.options.clip_dir"
        )
