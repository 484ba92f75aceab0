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
from pathlib import Path

import numpy as np

from mepipe import decoders  # noqa: F401  (registers the video source kind)
from mepipe.framesource import (  # noqa: F401  (re-exported: the interface every caller imports from here)
    SOURCES,
    FrameReadError,
    FrameSource,
    as_rgb,
    first_line,
    size_changed,
)
from mepipe.records import ClipRecord


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
