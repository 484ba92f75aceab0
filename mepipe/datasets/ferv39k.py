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

from mepipe.datasets.base import DatasetAdapter, ScanResult, register_adapter
from mepipe.datasets.macro import find_video, frames_record, missing_source, read_delimited, video_record
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue
from mepipe.sources import is_video_file

CLIP_DIRS = ("2_ClipsforFaceCrop", "1_ClipsforFaceCrop", "0_7_LabelClips", ".")
SETUP_DIR = "4_setups"


@register_adapter("ferv39k")
class Ferv39kAdapter(DatasetAdapter):
    """FERV39k large-scale in-the-wild video facial expressions (train/test lists per setup).

    Options:
        setup: folder under ``4_setups`` holding the lists (default ``All_scenes``).
        lists: list file names (default ``[train_All.csv, test_All.csv]``; the split is the part before ``_``).
        clip_dir: folder the list paths are relative to (default the first existing of
            ``2_ClipsforFaceCrop``, ``1_ClipsforFaceCrop``, ``0_7_LabelClips``, the root).
        fps: frame rate assumed for frame folders (default 30).
    """

    expression_type = "macro"
    option_names = ("setup", "lists", "clip_dir", "fps")

    def scan(self) -> ScanResult:
        setup = str(self.options.get("setup", "All_scenes"))
        names = list(
            self.options.get("lists")
            or (f"train_{setup.split('_')[0]}.csv", f"test_{setup.split('_')[0]}.csv")
        )
        clip_root = self._clip_root()
        fps = float(self.options.get("fps", 30.0))
        out = ScanResult()
        seen: dict[str, tuple[str, str]] = {}
        lists = [self.root / SETUP_DIR / setup / n for n in names]
        if not any(p.is_file() for p in lists):
            raise AnnotationError(
                f"ferv39k: none of {[str(p) for p in lists]} exists; copy 4_setups from the "
                "FERV39k archive, or set dataset.options.setup / lists"
            )
        for path in lists:
            if not path.is_file():
                continue
            split = path.stem.split("_")[0]
            for line, cells in read_delimited(path, sep=None, header=False):
                if len(cells) != 2:
                    out.failures.append(
                        (
                            None,
                            ClipIssue(
                                self.name,
                                f"row{line}",
                                "bad_value",
                                f"{path} line {line}: expected '<path> <Label>', got {cells}",
                                file=str(path),
                                row=line,
                            ),
                        )
                    )
                    continue
                rel, label = cells
                rel_path = PurePosixPath(rel.replace("\\", "/").strip("/"))
                cid = str(rel_path.with_suffix("")) if is_video_file(rel) else str(rel_path)
                if cid in seen:
                    if seen[cid][0] != label:
                        out.failures.append(
                            (
                                None,
                                ClipIssue(
                                    self.name,
                                    cid,
                                    "label_conflict",
                                    f"{path} line {line}: clip {cid} is listed again with label {label} "
                                    f"(was {seen[cid][0]} in {seen[cid][1]}); fix the list",
                                    cid,
                                    str(path),
                                    line,
                                ),
                            )
                        )
                    continue
                seen[cid] = (label, f"{path.name} line {line}")
                extra = {"split": split, "scene": rel_path.parts[0] if len(rel_path.parts) > 1 else ""}
                target = clip_root / rel_path
                video = (
                    target
                    if is_video_file(rel) and target.is_file()
                    else find_video(target.parent, target.name)
                )
                if video is not None:
                    out.clips.append(
                        video_record(self.name, cid, cid, video, emotion_raw=label, fps=fps, extra=extra)
                    )
                    continue
                if not target.is_dir():
                    out.failures.append(
                        (
                            None,
                            missing_source(self.name, cid, cid, f"no folder or video {target}", path, line),
                        )
                    )
                    continue
                out.add(*frames_record(self.name, cid, cid, target, emotion_raw=label, fps=fps, extra=extra))
        return out

    def _clip_root(self) -> Path:
        wanted = self.options.get("clip_dir")
        for name in [wanted] if wanted else CLIP_DIRS:
            if (self.root / str(name)).is_dir():
                return self.root / str(name)
        raise ConfigError(
            f"ferv39k: clip folder {wanted} not found under {self.root} (dataset.options.clip_dir)"
        )
