"""Frame sources: one interface over a folder of frame images and (later) video files.

A source yields ``(H, W, 3) uint8 RGB`` frames; grayscale inputs are replicated to three channels.
Positions are 0-based indices into the clip's frames; ``frame_numbers`` gives the source frame
number of each position.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from mepipe.records import ClipRecord
from mepipe.registry import Registry


class FrameReadError(Exception):
    """A frame could not be decoded; ``reason`` is a manifest reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FrameSource(ABC):
    """Frames of one clip: count, fps, indexed read and sequential iteration."""

    fps: float
    frame_numbers: list[int]

    def __len__(self) -> int:
        return len(self.frame_numbers)

    @abstractmethod
    def read(self, i: int) -> np.ndarray:
        """Frame at position ``i`` as ``(H, W, 3) uint8 RGB``; raises :class:`FrameReadError`."""

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.read(i)

    def checksum(self, i: int) -> str:
        """sha256 of the bytes frame ``i`` was decoded from ('' when not per-frame)."""
        return ""

    def close(self) -> None:  # noqa: B027  (optional hook)
        pass


SOURCES: Registry[type[FrameSource]] = Registry("frame source")


def is_truncated_jpeg(data: bytes) -> bool:
    """True when JPEG bytes lack the end-of-image marker (libjpeg would decode them with grey rows)."""
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]


@SOURCES.register("images")
class ImageFolderSource(FrameSource):
    """Frames stored as image files (``clip.frame_files`` under ``clip.source_path``)."""

    def __init__(self, clip: ClipRecord) -> None:
        self.folder = Path(clip.source_path)
        self.files = list(clip.frame_files)
        self.frame_numbers = list(clip.frame_numbers)
        self.fps = clip.fps
        self._sha: dict[int, str] = {}

    def read(self, i: int) -> np.ndarray:
        path = self.folder / self.files[i]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FrameReadError("unreadable_frame", f"{path}: cannot be read ({exc.strerror})") from None
        self._sha[i] = hashlib.sha256(data).hexdigest()
        if path.suffix.lower() in (".jpg", ".jpeg") and is_truncated_jpeg(data):
            raise FrameReadError("corrupt_frame", f"{path}: truncated JPEG (no end marker); re-extract this frame")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise FrameReadError("corrupt_frame", f"{path}: not a decodable image; re-extract this frame")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def checksum(self, i: int) -> str:
        if i not in self._sha:
            self._sha[i] = hashlib.sha256((self.folder / self.files[i]).read_bytes()).hexdigest()
        return self._sha[i]


def open_source(clip: ClipRecord) -> FrameSource:
    """The frame source for a clip, chosen by ``clip.source_kind``."""
    return SOURCES.get(clip.source_kind)(clip)
