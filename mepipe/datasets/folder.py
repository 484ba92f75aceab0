"""``folder``: any folder of videos and/or frame folders, with an optional CSV of labels.

Without a CSV every video file (``.mp4 .avi .mov .mkv ...``) and every folder that directly holds
image files becomes a clip; its ``clip_id`` is its path relative to the root without the suffix
(``Train_AFEW/Angry/000046`` for ``Train_AFEW/Angry/000046.avi``). With ``label_from_parent`` the
parent folder's name is the label (the AFEW layout ``Train_AFEW/<Emotion>/*.avi``).

With a CSV (option ``csv``, a header row required) each row is a clip:

* ``path`` (required): the video file or frame folder, relative to the root (a path without suffix
  is matched against the known video suffixes);
* ``label`` (optional): kept verbatim in ``emotion_raw``;
* ``subject`` (optional): the subject id (default: the clip id, every clip its own group);
* ``onset``, ``apex``, ``offset`` (optional): source frame numbers (file-name numbers for frame
  folders, 0-based decoded indices for videos); blank = not annotated;
* every other column is kept as a string in ``extra`` (e.g. ``split``, ``fold``).

Rows naming a missing file are ``missing_file`` failures; duplicate paths are ``duplicate_clip``; a
path leading outside the root (``../x``, a symlink out of the tree) is ``path_outside_source``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from mepipe.datasets.base import (
    IMAGE_SUFFIXES,
    DatasetAdapter,
    FrameLister,
    ScanResult,
    register_adapter,
    validate_image_clip,
)
from mepipe.datasets.macro import find_video, frames_record, has_images, missing_source, video_record
from mepipe.datasets.sheets import cell_int, cell_str
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue, ClipRecord
from mepipe.sources import is_video_file

KNOWN_COLUMNS = ("path", "label", "subject", "onset", "apex", "offset")


@register_adapter("folder")
class FolderAdapter(DatasetAdapter):
    """A generic adapter for a folder of videos or frame folders.

    Options:
        csv: a CSV (path relative to the root, or absolute) with columns ``path[,label,subject,onset,apex,offset,...]``.
        label_from_parent: without a CSV, use the parent folder's name as the label (default ``false``).
        recursive: without a CSV, look in sub-folders too (default ``true``).
        fps: frame rate of frame folders (default 30; videos give their own).
        expression_type: ``macro`` (default) or ``micro``.
        dataset_name: the dataset name recorded in the manifest and keys (default ``folder``).
    """

    expression_type = "macro"
    option_names = ("csv", "label_from_parent", "recursive", "fps", "expression_type", "dataset_name")

    def scan(self) -> ScanResult:
        self.fps = float(self.options.get("fps", 30.0))
        self.kind = str(self.options.get("expression_type", "macro"))
        if self.kind not in ("macro", "micro"):
            raise ConfigError(f"folder: expression_type {self.kind!r} must be macro or micro")
        self.dataset = str(self.options.get("dataset_name", self.name))
        if self.options.get("csv"):
            return self._scan_csv(Path(str(self.options["csv"])))
        return self._scan_tree()

    def _scan_tree(self) -> ScanResult:
        out = self.new_result()
        lister = FrameLister(out.roots)
        recursive = bool(self.options.get("recursive", True))
        from_parent = bool(self.options.get("label_from_parent", False))
        walk = sorted(self.root.rglob("*") if recursive else self.root.iterdir())
        for p in walk:
            rel = p.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            label = p.parent.name if from_parent and p.parent != self.root else ""
            if p.is_file() and is_video_file(p):
                cid = str(PurePosixPath(*rel.parts).with_suffix(""))
                out.add(
                    video_record(
                        self.dataset,
                        cid,
                        cid,
                        p,
                        emotion_raw=label,
                        fps=self.fps,
                        extra={},
                        expression_type=self.kind,
                    )
                )
            elif p.is_dir() and has_images(p):
                cid = str(PurePosixPath(*rel.parts))
                out.add(
                    *frames_record(
                        self.dataset,
                        cid,
                        cid,
                        p,
                        lister=lister,
                        emotion_raw=label,
                        fps=self.fps,
                        extra={},
                        expression_type=self.kind,
                    )
                )
        return out

    def _scan_csv(self, csv_path: Path) -> ScanResult:
        path = csv_path if csv_path.is_absolute() else self.root / csv_path
        if not path.is_file():
            raise AnnotationError(f"folder: CSV {path} not found (dataset.options.csv)")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:  # noqa: BLE001  (pandas raises many types)
            raise AnnotationError(f"{path}: cannot be read as CSV ({exc})") from None
        df.columns = [str(c).strip().lower() for c in df.columns]
        if "path" not in df.columns:
            raise AnnotationError(
                f"{path}: no 'path' column (found {list(df.columns)}); the first row must be a "
                "header such as path,label,subject"
            )
        out = self.new_result()
        lister = FrameLister(out.roots)
        for i, rec in enumerate(df.to_dict("records")):
            line = i + 2
            rel = rec["path"].strip().replace("\\", "/").strip("/")
            if not rel:
                continue
            target = Path(rel) if Path(rel).is_absolute() else self.root / rel
            cid = str(PurePosixPath(rel).with_suffix("")) if is_video_file(rel) else str(PurePosixPath(rel))
            subject = cell_str(rec.get("subject", "")) or cid
            label = cell_str(rec.get("label", ""))
            extra = {k: cell_str(v) for k, v in rec.items() if k not in KNOWN_COLUMNS}
            try:
                keys = {
                    k: cell_int(rec.get(k, ""), k, missing=("", "/", "-", "nan"))
                    for k in ("onset", "apex", "offset")
                }
            except ValueError as exc:
                out.fail(
                    ClipIssue(
                        self.dataset, cid, "bad_value", f"{path} line {line}: {exc}", subject, str(path), line
                    )
                )
                continue
            video = target if target.is_file() and is_video_file(target) else None
            if video is None and not target.is_dir():
                video = find_video(target.parent, target.name)
            clip: ClipRecord
            if video is not None:
                clip = video_record(
                    self.dataset,
                    cid,
                    subject,
                    video,
                    emotion_raw=label,
                    fps=self.fps,
                    extra=extra,
                    expression_type=self.kind,
                )
                out.add(_with_keys(clip, keys), file=path, row=line)
                continue
            if not target.is_dir() or target.suffix.lower() in IMAGE_SUFFIXES:
                out.fail(
                    missing_source(
                        self.dataset, cid, subject, f"no video or frame folder {target}", path, line
                    )
                )
                continue
            clip, issue = frames_record(
                self.dataset,
                cid,
                subject,
                target,
                lister=lister,
                emotion_raw=label,
                fps=self.fps,
                extra=extra,
                expression_type=self.kind,
            )
            if issue is None:
                clip = _with_keys(clip, keys)
                issue = validate_image_clip(clip, require_contiguous=False)
            out.add(clip, issue, file=path, row=line)
        return out


def _with_keys(clip: ClipRecord, keys: dict[str, int | None]) -> ClipRecord:
    from dataclasses import replace

    return replace(clip, onset=keys["onset"], apex=keys["apex"], offset=keys["offset"])
