"""MAFW, as distributed: ``data/clips/00025.mp4`` (or frames ``data/frames/00025/``) + the split lists.

Quirks handled here (``shared/reference/datasets.md`` section 3):

* Single-label splits are ``split/single/no_caption/set_{1..5}/{train,test}.txt``, space-separated,
  no header: ``<clip>.mp4 <label>`` with label names (``anger, disgust, fear, happiness, neutral,
  sadness, surprise, contempt, anxiety, helplessness, disappointment``), kept verbatim in
  ``emotion_raw``. Repositories number these classes in **different orders** (MAE-DFER vs DFER-CLIP),
  which is why mapping to indices happens late, through a label scheme.
* Each clip is listed once per fold; the folds are merged into ``extra`` (``{"set_1": "train", ...}``);
  a clip labelled differently in two lists is a ``label_conflict`` failure.
* Three forms: videos ``data/clips/<name>.mp4`` (preferred when present), frames ``data/frames/<name>/``
  or face crops ``data/faces/<name>/``; ``form`` picks one.
* No subject ids are distributed: ``subject`` is the clip id. Frame folders assume ``fps`` (default 30).
"""

from __future__ import annotations

from pathlib import Path

from mepipe.datasets.base import register_adapter
from mepipe.datasets.macro import SplitListAdapter
from mepipe.errors import AnnotationError

SPLIT_DIR = "split/single/no_caption"
FORMS = {"video": ("data/clips",), "frames": ("data/frames",), "faces": ("data/faces",)}


@register_adapter("mafw")
class MafwAdapter(SplitListAdapter):
    """MAFW multi-modal affective database, single-labelled clips (11 classes, 5 folds).

    Options:
        form: ``auto`` (the first of video, frames, faces that exists), ``video``, ``frames`` or ``faces``.
        folds: fold numbers to read (default ``[1, 2, 3, 4, 5]``).
        split_dir: folder of the ``set_k`` lists (default ``split/single/no_caption``).
        fps: frame rate assumed for frame folders (default 30).
    """

    option_names = ("form", "folds", "split_dir", "fps")

    def lists(self) -> list[tuple[Path, str, str]]:
        split_dir = self.root / str(self.options.get("split_dir", SPLIT_DIR))
        files = [
            (split_dir / f"set_{k}" / f"{split}.txt", f"set_{k}", split)
            for k in self.folds()
            for split in ("train", "test")
        ]
        if not any(p.is_file() for p, _, _ in files):
            raise AnnotationError(
                f"mafw: no split list under {split_dir} (expected e.g. {files[0][0]}); copy "
                "split/ from the MAFW archive or set dataset.options.split_dir"
            )
        return files

    def parse(self, cells: list[str]) -> tuple[str, str]:
        """``<clip>.mp4 <label>``, the label name kept verbatim."""
        if len(cells) != 2:
            raise ValueError(f"expected '<clip>.mp4 <label>', got {cells}")
        return Path(cells[0]).stem, cells[1]

    def clip_root(self) -> tuple[str, Path]:
        return self.pick_form(FORMS)
