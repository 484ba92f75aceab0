"""FERV39k, as distributed: frames ``2_ClipsforFaceCrop/<Scene>/<Emotion>/<id>/`` + ``4_setups`` split lists.

Quirks handled here (``shared/reference/datasets.md`` section 3):

* Splits are ``4_setups/All_scenes/train_All.csv`` and ``test_All.csv``: **space-separated, no
  header**, one ``<rel_path> <LabelString>`` per line (``Action/Happy/0001 Happy``). The label string
  (``Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear``) is kept verbatim in ``emotion_raw``.
* ``rel_path`` is relative to the clip folder (``2_ClipsforFaceCrop`` by default); a path that names a
  video file (or for which ``<rel_path>.mp4`` exists) is read as a video instead of a frame folder.
* ``clip_id`` is ``rel_path`` without a video suffix; the scene (first path part) and the split go
  into ``extra``. No subject ids are distributed: ``subject`` is the clip id.
* Frame folders carry no frame rate: ``fps`` (default 30) is assumed.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mepipe.datasets.base import register_adapter
from mepipe.datasets.macro import SplitListAdapter, rel_clip_id
from mepipe.errors import AnnotationError, ConfigError

CLIP_DIRS = ("2_ClipsforFaceCrop", "1_ClipsforFaceCrop", "0_7_LabelClips", ".")
SETUP_DIR = "4_setups"


@register_adapter("ferv39k")
class Ferv39kAdapter(SplitListAdapter):
    """FERV39k large-scale in-the-wild video facial expressions (train/test lists per setup).

    Options:
        setup: folder under ``4_setups`` holding the lists (default ``All_scenes``).
        lists: list file names (default ``[train_All.csv, test_All.csv]``; the split is the part before ``_``).
        clip_dir: folder the list paths are relative to (default the first existing of
            ``2_ClipsforFaceCrop``, ``1_ClipsforFaceCrop``, ``0_7_LabelClips``, the root).
        fps: frame rate assumed for frame folders (default 30).
    """

    option_names = ("setup", "lists", "clip_dir", "fps")

    def lists(self) -> list[tuple[Path, str, str]]:
        setup = str(self.options.get("setup", "All_scenes"))
        tag = setup.split("_")[0]
        wanted = self.options.get("lists") or (f"train_{tag}.csv", f"test_{tag}.csv")
        names = [str(n) for n in wanted]  # type: ignore[union-attr]
        files = [(self.root / SETUP_DIR / setup / n, "split", Path(n).stem.split("_")[0]) for n in names]
        if not any(p.is_file() for p, _, _ in files):
            raise AnnotationError(
                f"ferv39k: none of {[str(p) for p, _, _ in files]} exists; copy 4_setups from the "
                "FERV39k archive, or set dataset.options.setup / lists"
            )
        return files

    def parse(self, cells: list[str]) -> tuple[str, str]:
        """``<rel_path> <LabelString>``; the id is the path without a video suffix."""
        if len(cells) != 2:
            raise ValueError(f"expected '<path> <Label>', got {cells}")
        return rel_clip_id(cells[0]), cells[1]

    def clip_extra(self, cid: str) -> dict[str, str]:
        parts = PurePosixPath(cid).parts
        return {"scene": parts[0] if len(parts) > 1 else ""}

    def clip_root(self) -> tuple[str, Path]:
        wanted = self.options.get("clip_dir")
        for name in [wanted] if wanted else CLIP_DIRS:
            if (self.root / str(name)).is_dir():
                return "either", self.root / str(name)
        raise ConfigError(
            f"ferv39k: clip folder {wanted} not found under {self.root} (dataset.options.clip_dir)"
        )
