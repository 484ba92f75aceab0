"""Helpers shared by the macro-expression (video) adapters: DFEW, FERV39k, MAFW, CK+ and ``folder``.

These datasets give one label per clip and no onset/apex/offset (except CK+, whose sequences run
neutral -> peak). A clip is either a **video file** (``source_kind="video"``: frame numbers are the
0-based indices of decoded frames, fps comes from the container when the build opens it) or a
**frame folder** (``source_kind="images"``: frame numbers are the numbers in the file names, sorted
numerically; fps from the adapter's ``fps`` option since folders carry none).

:class:`SplitListAdapter` is the one scan of the datasets whose labels and folds come from split
lists (DFEW, MAFW, FERV39k): each declares where its lists are, how a line reads and where its clips
are; the scan reads every list, merges a clip listed in several (its membership lands in ``extra``),
fails a clip the lists label differently (``label_conflict``) and a line that does not parse
(``bad_value``), and locates each clip (``missing_file`` when it is not on disk).

Adapters never decode video here (listing only); a video that cannot be decoded becomes a failed
manifest row at build time (``unreadable_video``, ``empty_video``, ``corrupt_video``).
"""

from __future__ import annotations

import csv
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import ClassVar

from mepipe.datasets.base import IMAGE_SUFFIXES, DatasetAdapter, FrameLister, FrameListError, ScanResult
from mepipe.errors import AnnotationError, ConfigError
from mepipe.records import ClipIssue, ClipRecord
from mepipe.sources import VIDEO_SUFFIXES, is_video_file


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
        expression_type=expression_type,  # type: ignore[arg-type]
        extra=extra,
    )


def frames_record(
    dataset: str,
    clip_id: str,
    subject: str,
    folder: Path,
    *,
    lister: FrameLister,
    emotion_raw: str,
    fps: float,
    extra: dict[str, str],
    expression_type: str = "macro",
) -> tuple[ClipRecord, ClipIssue | None]:
    """A ``source_kind="images"`` record for a frame folder, with an issue when it cannot be listed
    (outside the dataset root, missing, no frames, a bad or repeated frame number)."""
    clip = replace(
        video_record(
            dataset,
            clip_id,
            subject,
            folder,
            emotion_raw=emotion_raw,
            fps=fps,
            extra=extra,
            expression_type=expression_type,
        ),
        source_kind="images",
    )

    def issue(reason: str, text: str) -> tuple[ClipRecord, ClipIssue]:
        return clip, ClipIssue(dataset, clip_id, reason, f"clip {clip_id}: {text}", subject, str(folder))

    if not lister.allows(folder):
        return issue("path_outside_source", lister.refusal(folder))
    if not folder.is_dir():
        return issue("missing_folder", f"frame folder {folder} does not exist; check --source and the layout")
    try:
        files, numbers = lister(folder)
    except FrameListError as exc:
        return issue(exc.reason, str(exc))
    clip = replace(clip, frame_files=tuple(files), frame_numbers=tuple(numbers))
    if not files:
        return issue("no_frames", f"{folder} holds no image frames")
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


def read_delimited(path: Path, *, sep: str | None) -> Iterator[tuple[int, list[str]]]:
    """Rows of a small text table as ``(line number, cells)``; blank lines skipped.

    ``sep=None`` splits on runs of whitespace (FERV39k, MAFW lists); otherwise a CSV with that
    delimiter.
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


def rel_clip_id(rel: str) -> str:
    """A clip id from a path in a list: ``Action/Happy/0001`` (a video suffix dropped)."""
    p = PurePosixPath(rel.replace("\\", "/").strip("/"))
    return str(p.with_suffix("")) if is_video_file(rel) else str(p)


class SplitListAdapter(DatasetAdapter):
    """A clip-labelled dataset whose labels and folds come from split lists (see the module docstring).

    Subclasses declare ``sep`` (``None``: whitespace) and ``header`` (the first line's cells, lower
    case; ``()``: no header line), set ``default_fps`` and implement :meth:`lists`, :meth:`parse` and
    :meth:`clip_root`. ``form`` is ``video`` (a clip is ``<root>/<id>.<video suffix>``), ``frames``
    (the folder ``<root>/<id>``) or ``either`` (the video when there is one, else the folder).
    """

    expression_type = "macro"
    sep: ClassVar[str | None] = None
    header: ClassVar[tuple[str, ...]] = ()
    default_fps: ClassVar[float] = 30.0
    n_folds: ClassVar[int] = 5

    def folds(self) -> list[int]:
        """The folds to read (``dataset.options.folds``, default all)."""
        folds = self.options.get("folds") or range(1, self.n_folds + 1)
        return [int(k) for k in folds]  # type: ignore[union-attr]

    @abstractmethod
    def lists(self) -> list[tuple[Path, str, str]]:
        """Every list file that may exist: ``(path, membership key, value)``, e.g.
        ``(set_1/train.txt, "set_1", "train")``. Raises when none exists."""

    @abstractmethod
    def parse(self, cells: list[str]) -> tuple[str, str]:
        """``(clip id, label)`` of a list line; raises ``ValueError`` saying what is wrong."""

    @abstractmethod
    def clip_root(self) -> tuple[str, Path]:
        """``(form, folder)`` the clip ids are relative to."""

    def clip_extra(self, cid: str) -> dict[str, str]:
        """``extra`` fields of a clip besides its list membership."""
        return {}

    def scan(self) -> ScanResult:
        form, root = self.clip_root()
        fps = float(self.options.get("fps", self.default_fps))  # type: ignore[arg-type]
        out = self.new_result(root)
        lister = FrameLister(out.roots)
        labels: dict[str, tuple[str, Path, int]] = {}
        member: dict[str, dict[str, str]] = {}
        conflicted: set[str] = set()
        for path, key, value in self.lists():
            if not path.is_file():
                continue
            rows = read_delimited(path, sep=self.sep)
            if self.header:
                first = next(rows, None)
                if first is None or tuple(c.lower() for c in first[1][: len(self.header)]) != self.header:
                    raise AnnotationError(
                        f"{path}: expected the header {','.join(self.header)!r}, found {first and first[1]}; "
                        "is this the split file as distributed?"
                    )
            for line, cells in rows:
                try:
                    cid, label = self.parse(cells)
                except (ValueError, IndexError) as exc:
                    text = f"{path} line {line}: {exc}; fix or remove the line"
                    out.fail(ClipIssue(self.name, f"row{line}", "bad_value", text, file=str(path), row=line))
                    continue
                known = labels.setdefault(cid, (label, path, line))
                if known[0] != label and cid not in conflicted:
                    conflicted.add(cid)
                    text = (
                        f"clip {cid} is labelled {known[0]} in {known[1]} line {known[2]} but {label} in "
                        f"{path} line {line}; the split files disagree, fix one of them"
                    )
                    out.fail(ClipIssue(self.name, cid, "label_conflict", text, cid, str(path), line))
                member.setdefault(cid, {}).setdefault(key, value)
        for cid in sorted(set(labels) - conflicted):
            label, path, line = labels[cid]
            extra = {**dict(sorted(member[cid].items())), **self.clip_extra(cid)}
            self._add(out, form, root, lister, cid, label, fps, extra, path, line)
        return out

    def _add(
        self,
        out: ScanResult,
        form: str,
        root: Path,
        lister: FrameLister,
        cid: str,
        label: str,
        fps: float,
        extra: dict[str, str],
        path: Path,
        line: int,
    ) -> None:
        """Record clip ``cid`` as a video or a frame folder; a missing source names the list line."""
        target = root / cid
        video = None
        if form in ("video", "either"):
            video = (
                target if is_video_file(cid) and target.is_file() else find_video(target.parent, target.name)
            )
        if video is not None:
            clip = video_record(self.name, cid, cid, video, emotion_raw=label, fps=fps, extra=extra)
            out.add(clip, file=path, row=line)
        elif form == "video" or (form == "either" and not target.is_dir()):
            what = f"no {root}/{cid}.mp4" if form == "video" else f"no folder or video {target}"
            out.fail(missing_source(self.name, cid, cid, what, path, line))
        else:
            clip, issue = frames_record(
                self.name, cid, cid, target, lister=lister, emotion_raw=label, fps=fps, extra=extra
            )
            out.add(clip, issue, file=path, row=line)

    def pick_form(self, forms: dict[str, tuple[str, ...]], *, folder: str | None = None) -> tuple[str, Path]:
        """The ``dataset.options.form`` and its folder: the first existing of ``forms[form]`` (all
        forms in order for ``auto``), or the ``clip_dir`` option ``folder``.

        Raises:
            ConfigError: an unknown form, or no such folder, listing what was tried.
        """
        form = str(self.options.get("form", "auto"))
        if form != "auto" and form not in forms:
            raise ConfigError(
                f"{self.name}: form {form!r} is not one of auto, {', '.join(forms)} (dataset.options.form)"
            )
        if folder:
            path = self.root / folder
            if not path.is_dir():
                raise ConfigError(f"{self.name}: clip_dir {path} does not exist (dataset.options.clip_dir)")
            if form == "auto":
                form = "video" if any(is_video_file(p) for p in list(path.iterdir())[:20]) else "frames"
            return form, path
        tried = [(k, d) for k, dirs in forms.items() if form in ("auto", k) for d in dirs]
        for kind, d in tried:
            if (self.root / d).is_dir():
                return kind, self.root / d
        raise ConfigError(
            f"{self.name}: no clip folder under {self.root}; expected one of {[d for _, d in tried]} "
            "(dataset.options.form / clip_dir)"
        )
