"""Helpers shared by the macro-expression (video) adapters: DFEW, FERV39k, MAFW, CK+ and ``folder``.

These datasets give one label per clip and no onset/apex/offset (except CK+, whose sequences run
neutral -> peak). A clip is either a **video file** (``source_kind="video"``: frame numbers are the
0-based indices of decoded frames, fps comes from the container when the build opens it) or a
**frame folder** (``source_kind="images"``: frame numbers are the numbers in the file names, sorted
numerically; fps from the adapter's ``fps`` option since folders carry none).

Adapters never decode video here (listing only); a video that cannot be decoded becomes a failed
manifest row at build time (``unreadable_video``, ``empty_video``, ``corrupt_video``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from mepipe.datasets.base import IMAGE_SUFFIXES, ScanResult, list_frames
from mepipe.errors import AnnotationError
from mepipe.records import ClipIssue, ClipRecord
from mepipe.sources import VIDEO_SUFFIXES


def find_video(folder: Path, stem: str) -> Path | None:
    """``folder/stem.<video suffix>`` if one exists (any known suffix, any case), else ``None``."""
    for suffix in VIDEO_SUFFIXES:
        for s in (suffix, suffix.upper()):
            p = folder / f"{stem}{s}"
            if p.is_file():
                return p
    return None


def has_images(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one image file."""
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def video_record(
    dataset: str,
    clip_id: str,
    subject: str,
    path: Path,
    *,
    emotion_raw: str,
    fps: float,
    extra: dict[str, str],
    expression_type: str = "macro",
) -> ClipRecord:
    """A ``source_kind="video"`` record (all frames of the file; keyframes not annotated)."""
    return ClipRecord(
        dataset=dataset,
        subject=subject,
        clip_id=clip_id,
        source_kind="video",
        source_path=str(path),
        emotion_raw=emotion_raw,
        fps=fps,
        expression_type=expression_type,
        extra=extra,
    )  # type: ignore[arg-type]


def frames_record(
    dataset: str,
    clip_id: str,
    subject: str,
    folder: Path,
    *,
    emotion_raw: str,
    fps: float,
    extra: dict[str, str],
    expression_type: str = "macro",
) -> tuple[ClipRecord, ClipIssue | None]:
    """A ``source_kind="images"`` record for a frame folder, with an issue when it holds no frames."""
    files, numbers = list_frames(folder) if folder.is_dir() else ([], [])
    clip = ClipRecord(
        dataset=dataset,
        subject=subject,
        clip_id=clip_id,
        source_kind="images",
        source_path=str(folder),
        frame_files=tuple(files),
        frame_numbers=tuple(numbers),
        emotion_raw=emotion_raw,
        fps=fps,
        expression_type=expression_type,  # type: ignore[arg-type]
        extra=extra,
    )
    if not folder.is_dir():
        return clip, ClipIssue(
            dataset,
            clip_id,
            "missing_folder",
            f"clip {clip_id}: frame folder {folder} does not exist; check --source and the layout",
            subject,
            str(folder),
        )
    if not files:
        return clip, ClipIssue(
            dataset,
            clip_id,
            "no_frames",
            f"clip {clip_id}: {folder} holds no image frames",
            subject,
            str(folder),
        )
    if len(set(numbers)) != len(numbers):
        return clip, ClipIssue(
            dataset,
            clip_id,
            "duplicate_frames",
            f"clip {clip_id}: {folder} has two files with the same frame number; remove the duplicates",
            subject,
            str(folder),
        )
    return clip, None


def missing_source(
    dataset: str, clip_id: str, subject: str, where: str, file: Path, row: int | None
) -> ClipIssue:
    """The issue for a split/annotation row whose video or frame folder is not on disk."""
    return ClipIssue(
        dataset,
        clip_id,
        "missing_file",
        f"{file}" + (f" row {row}" if row else "") + f": clip {clip_id} not found ({where}); "
        "check --source, dataset.options.form and that the archive is fully extracted",
        subject,
        str(file),
        row,
    )


def add_split_clip(
    out: ScanResult,
    dataset: str,
    form: str,
    clip_root: Path,
    cid: str,
    *,
    label: str,
    fps: float,
    extra: dict[str, str],
    split_file: Path,
    line: int,
) -> None:
    """Record clip ``cid`` listed in a split file: the video ``clip_root/<cid>.mp4`` (``form ==
    "video"``) or the frame folder ``clip_root/<cid>``; a missing source becomes a failure naming
    the split file and line."""
    if form != "video":
        out.add(*frames_record(dataset, cid, cid, clip_root / cid, emotion_raw=label, fps=fps, extra=extra))
        return
    video = find_video(clip_root, cid)
    if video is None:
        out.failures.append(
            (None, missing_source(dataset, cid, cid, f"no {clip_root}/{cid}.mp4", split_file, line))
        )
        return
    out.clips.append(video_record(dataset, cid, cid, video, emotion_raw=label, fps=fps, extra=extra))


class SplitLabels:
    """Clip labels gathered over several split files (DFEW and MAFW list each clip once per fold).

    A clip labelled differently in two files becomes one ``label_conflict`` failure naming both
    places and is not built; fold membership (``set_k: train|test``) goes into the clip's ``extra``.
    """

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.labels: dict[str, tuple[str, Path, int]] = {}
        self.member: dict[str, dict[str, str]] = {}
        self.conflicted: set[str] = set()

    def add(
        self, out: ScanResult, cid: str, label: str, fold: int, split: str, path: Path, line: int
    ) -> None:
        """Record that ``path`` line ``line`` lists clip ``cid`` with ``label`` in fold ``fold``'s ``split``."""
        known = self.labels.get(cid)
        if known is not None and known[0] != label:
            if cid not in self.conflicted:
                self.conflicted.add(cid)
                text = (
                    f"clip {cid} is labelled {known[0]} in {known[1]} line {known[2]} but {label} in {path} "
                    f"line {line}; the split files disagree, fix one of them"
                )
                out.failures.append(
                    (None, ClipIssue(self.dataset, cid, "label_conflict", text, cid, str(path), line))
                )
            return
        self.labels.setdefault(cid, (label, path, line))
        self.member.setdefault(cid, {})[f"set_{fold}"] = split

    def emit(self, out: ScanResult, form: str, clip_root: Path, fps: float) -> None:
        """Add every unconflicted clip (sorted by id) to ``out`` via :func:`add_split_clip`."""
        for cid in sorted(self.labels):
            if cid in self.conflicted:
                continue
            label, path, line = self.labels[cid]
            extra = dict(sorted(self.member[cid].items()))
            add_split_clip(
                out,
                self.dataset,
                form,
                clip_root,
                cid,
                label=label,
                fps=fps,
                extra=extra,
                split_file=path,
                line=line,
            )


def read_delimited(path: Path, *, sep: str | None, header: bool) -> Iterator[tuple[int, list[str]]]:
    """Rows of a small text table as ``(line number, cells)``; blank lines skipped.

    ``sep=None`` splits on runs of whitespace (FERV39k, MAFW lists); otherwise a CSV with that
    delimiter. With ``header`` the first non-blank line is returned as line 1 too (callers check it).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot be read ({exc.strerror})") from None
    if sep is None:
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield i, line.split()
        return
    for i, cells in enumerate(csv.reader(text.splitlines(), delimiter=sep), start=1):
        if any(c.strip() for c in cells):
            yield i, [c.strip() for c in cells]


def clip_number(value: str) -> int:
    """``"1"``, ``"00001"``, ``"00001.mp4"``, ``"1.0"`` -> ``1``; raises ``ValueError`` otherwise."""
    text = value.strip()
    stem = text.rsplit(".", 1)[0] if "." in text and not text.replace(".", "", 1).isdigit() else text
    f = float(stem)
    if not f.is_integer() or f < 0:
        raise ValueError(f"{value!r} is not a clip number")
    return int(f)
