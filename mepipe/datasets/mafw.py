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

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.macro import SplitLabels, read_delimited
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue

SPLIT_DIR = "split/single/no_caption"
FORMS = {"video": "data/clips", "frames": "data/frames", "faces": "data/faces"}
N_FOLDS = 5


@register_adapter("mafw")
class MafwAdapter(DatasetAdapter):
    """MAFW multi-modal affective database, single-labelled clips (11 classes, 5 folds).

    Options:
        form: ``auto`` (the first of video, frames, faces that exists), ``video``, ``frames`` or ``faces``.
        folds: fold numbers to read (default ``[1, 2, 3, 4, 5]``).
        split_dir: folder of the ``set_k`` lists (default ``split/single/no_caption``).
        fps: frame rate assumed for frame folders (default 30).
    """

    expression_type = "macro"
    option_names = ("form", "folds", "split_dir", "fps")

    def scan(self) -> ScanResult:
        form, clip_root = self._clip_root()
        folds = [int(k) for k in (self.options.get("folds") or range(1, N_FOLDS + 1))]
        split_dir = self.root / str(self.options.get("split_dir", SPLIT_DIR))
        fps = float(self.options.get("fps", 30.0))
        out = ScanResult()
        gathered = SplitLabels(self.name)
        lists = [
            (k, split, split_dir / f"set_{k}" / f"{split}.txt") for k in folds for split in ("train", "test")
        ]
        if not any(p.is_file() for *_, p in lists):
            raise AnnotationError(
                f"mafw: no split list under {split_dir} (expected e.g. {lists[0][2]}); copy "
                "split/ from the MAFW archive or set dataset.options.split_dir"
            )
        for fold, split, path in lists:
            if not path.is_file():
                continue
            for line, cells in read_delimited(path, sep=None, header=False):
                if len(cells) != 2:
                    out.failures.append(
                        (
                            None,
                            ClipIssue(
                                self.name,
                                f"row{line}",
                                "bad_value",
                                f"{path} line {line}: expected '<clip>.mp4 <label>', got {cells}",
                                file=str(path),
                                row=line,
                            ),
                        )
                    )
                    continue
                cid = Path(cells[0]).stem
                label = cells[1]
                gathered.add(out, cid, label, fold, split, path, line)
        gathered.emit(out, form, clip_root, fps)
        return out

    def _clip_root(self) -> tuple[str, Path]:
        form = str(self.options.get("form", "auto"))
        if form != "auto" and form not in FORMS:
            raise ConfigError(
                f"mafw: form {form!r} is not one of auto, {', '.join(FORMS)} (dataset.options.form)"
            )
        for kind, rel in FORMS.items():
            if form in ("auto", kind) and (self.root / rel).is_dir():
                return kind, self.root / rel
        wanted = [FORMS[form]] if form != "auto" else list(FORMS.values())
        raise ConfigError(f"mafw: no clip folder under {self.root}; expected {wanted} (dataset.options.form)")
