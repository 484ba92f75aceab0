"""Frame sources: one interface over a folder of frame images and over video files.

A source yields ``(H, W, 3) uint8 RGB`` frames; grayscale inputs are replicated to three channels.
Positions are 0-based indices into the clip's frames; ``frame_numbers`` gives the source frame
number of each position (for videos: the 0-based index of the decoded frame in the file) and
``timestamps_ms`` its presentation time in milliseconds.

Access patterns: image folders are read in any order (``random_access = True``). Videos must be
decoded in order: a seek into long-GOP H.264 decodes from the previous key frame, so indexed reads
run at ~20 frames/s against ~1,500 frames/s sequentially (``shared/reference/environment.md`` §5).
The build therefore iterates a video once, front to back (:meth:`FrameSource.iter_range`). The video
decoders (PyAV, decord) live in :mod:`mepipe.decoders`.

Every frame of a clip must have the same size: an image folder's size is taken from the headers of
its first, middle and last files when the clip is opened, and each frame is checked when read, so
one 8000x8000 or 320x240 frame among 640x480 ones (or such a reference frame) fails the clip
(``frame_size_changed``, naming the file) instead of being warped with a transform fitted on another
size, and an empty file fails it as ``corrupt_frame``.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from mepipe.records import ClipRecord
from mepipe.registry import Registry


class FrameReadError(Exception):
    """A frame could not be decoded; ``reason`` is a manifest reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FrameSource(ABC):
    """Frames of one clip: count, fps, indexed read and sequential iteration.

    Attributes:
        fps: frame rate (for videos: the container's average rate).
        frame_numbers: source frame number of each position.
        random_access: ``True`` when :meth:`read` in any order is cheap (image files); ``False`` for
            videos, which should be consumed with :meth:`iter_range`.
        notes: non-fatal findings while opening/decoding (e.g. variable frame rate), for the manifest.
    """

    fps: float
    frame_numbers: list[int]
    random_access: ClassVar[bool] = True
    notes: list[str]

    def __len__(self) -> int:
        return len(self.frame_numbers)

    @abstractmethod
    def read(self, i: int) -> np.ndarray:
        """Frame at position ``i`` as ``(H, W, 3) uint8 RGB``; raises :class:`FrameReadError`."""

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.iter_range(0, len(self)):
            yield frame

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(position, frame)`` for positions ``start <= i < stop`` in order (sequential decode)."""
        for i in range(start, min(stop, len(self))):
            yield i, self.read(i)

    def timestamps_ms(self) -> np.ndarray:
        """``(T,) float64`` presentation time of each position in ms (frame number / fps by default)."""
        fps = self.fps if self.fps and self.fps > 0 else 1.0
        return np.asarray(self.frame_numbers, dtype=np.float64) * (1000.0 / fps)

    def checksum(self, i: int) -> str:
        """sha256 of the bytes frame ``i`` was decoded from ('' when not per-frame)."""
        return ""

    def file_checksum(self) -> str:
        """sha256 of the whole source file ('' when the clip is not one file)."""
        return ""

    def close(self) -> None:  # noqa: B027  (optional hook)
        pass


SOURCES: Registry = Registry("frame source")
"""``source_kind`` -> a callable ``(clip, *, decode_threads, decoder) -> FrameSource``."""


def is_truncated_jpeg(data: bytes) -> bool:
    """True when JPEG bytes lack the end-of-image marker (libjpeg would decode them with grey rows)."""
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]


_JPEG_SOF = {0xC0 + k for k in range(16)} - {0xC4, 0xC8, 0xCC}
"""JPEG start-of-frame markers (baseline, progressive, lossless ...); C4/C8/CC are other segments."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(H, W)`` from the first bytes of a JPEG, PNG or BMP file (no decoding).

    Returns:
        the size, ``(0, 0)`` for empty data, or ``None`` when the format is not one of these or the
        header is not within ``data`` (the decoder then decides).
    """
    if not data:
        return (0, 0)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:2] == b"BM" and len(data) >= 26:
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(h), abs(w)
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):  # walk the JPEG segments up to the first start-of-frame
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_SOF:
            seg = data[pos : pos + 9]
            return (
                (int.from_bytes(seg[5:7], "big"), int.from_bytes(seg[7:9], "big")) if len(seg) == 9 else None
            )
        elif marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
        elif marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def image_size(path: str | os.PathLike, head_bytes: int = 1 << 16) -> tuple[int, int] | None:
    """``(H, W)`` of a JPEG, PNG or BMP file from its first ``head_bytes`` (:func:`header_size`)."""
    with open(path, "rb") as f:
        return header_size(f.read(head_bytes))


def size_changed(what: str, size: tuple[int, ...], expected: tuple[int, ...], whose: str) -> str:
    """The ``frame_size_changed`` message: ``what`` is WxH where ``whose`` frames are W0xH0."""
    h, w = int(size[0]), int(size[1])
    h0, w0 = int(expected[0]), int(expected[1])
    return (
        f"{what} is {w}x{h} pixels but {whose} frames are {w0}x{h0}; a clip must keep one frame size "
        "(a resized or foreign frame would be aligned with the wrong transform): re-extract or resize "
        "that frame, or remove the clip"
    )


@SOURCES.register("images")
class ImageFolderSource(FrameSource):
    """Frames stored as image files (``clip.frame_files`` under ``clip.source_path``).

    The clip's frame size is the one most of its first, middle and last files have (read from their
    headers when the clip is opened). Every frame is checked against it when read, from the header
    of the bytes already read (so an 8000x8000 intruder is refused without decoding it) and again
    after decoding.

    Raises:
        FrameReadError: naming the file: ``unreadable_frame``; ``corrupt_frame`` (empty, truncated,
            undecodable); ``frame_size_changed``.
    """

    def __init__(self, clip: ClipRecord, **_: object) -> None:
        self.folder = Path(clip.source_path)
        self.files = list(clip.frame_files)
        self.frame_numbers = list(clip.frame_numbers)
        self.fps = clip.fps
        self.notes = []
        self._sha: dict[int, str] = {}
        self.size = self._expected_size()

    def _expected_size(self) -> tuple[int, int] | None:
        n = len(self.files)
        sizes = []
        for i in sorted({n // 2, 0, n - 1} if n else set()):
            try:
                size = image_size(self.folder / self.files[i])
            except OSError:
                size = None  # a missing or unreadable file fails when it is read, with its reason
            if size not in (None, (0, 0)):
                sizes.append(size)
        if not sizes:
            return None
        return max(sizes, key=lambda s: (sizes.count(s), s == sizes[len(sizes) // 2]))

    def _check_size(self, path: Path, size: tuple[int, ...] | None) -> None:
        if size is not None and self.size is not None and tuple(size[:2]) != self.size:
            raise FrameReadError("frame_size_changed", size_changed(str(path), size, self.size, "the clip's"))

    def read(self, i: int) -> np.ndarray:
        path = self.folder / self.files[i]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FrameReadError("unreadable_frame", f"{path}: cannot be read ({exc.strerror})") from None
        self._sha[i] = hashlib.sha256(data).hexdigest()
        if not data:
            raise FrameReadError(
                "corrupt_frame", f"{path}: empty file (0 bytes); re-extract this frame from the archive"
            )
        self._check_size(path, header_size(data[: 1 << 16]))
        if path.suffix.lower() in (".jpg", ".jpeg") and is_truncated_jpeg(data):
            raise FrameReadError(
                "corrupt_frame", f"{path}: truncated JPEG (no end marker); re-extract this frame"
            )
        import cv2  # lazily: mepipe.datasets (and so label schemes, folds, training) must import without OpenCV

        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        except cv2.error:
            img = None
        if img is None:
            raise FrameReadError("corrupt_frame", f"{path}: not a decodable image; re-extract this frame")
        self._check_size(path, img.shape)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def checksum(self, i: int) -> str:
        if i not in self._sha:
            self._sha[i] = hashlib.sha256((self.folder / self.files[i]).read_bytes()).hexdigest()
        return self._sha[i]


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


@SOURCES.register("video")
def _open_video(clip: ClipRecord, *, decode_threads: int = 1, decoder: str | None = None) -> FrameSource:
    from mepipe.decoders import DEFAULT_DECODER, open_video

    return open_video(clip, decode_threads=decode_threads, decoder=decoder or DEFAULT_DECODER)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), at most 200 characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, >=3)`` uint8 -> C-contiguous ``(H, W, 3)`` (grey replicated)."""
    if frame.ndim == 2:
        return np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
    if frame.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(frame, 3, axis=2))
    return np.ascontiguousarray(frame[:, :, :3])


def open_source(clip: ClipRecord, *, decode_threads: int = 1, decoder: str | None = None) -> FrameSource:
    """The frame source for a clip, chosen by ``clip.source_kind``.

    Args:
        decode_threads: video decoder threads (ignored for image folders).
        decoder: video decoder (``video.decoder``: ``pyav`` or ``decord``; ``None``: the default,
            :data:`mepipe.decoders.DEFAULT_DECODER`); ignored for image folders.
    """
    return SOURCES.get(clip.source_kind)(clip, decode_threads=decode_threads, decoder=decoder)


def is_video_file(path: str | os.PathLike) -> bool:
    """True when ``path``'s suffix is a known video container suffix (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
