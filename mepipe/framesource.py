"""The frame-source interface shared by image folders (:mod:`mepipe.sources`) and videos
(:mod:`mepipe.decoders`): :class:`FrameSource`, :class:`FrameReadError`, the ``SOURCES`` registry
(``source_kind`` -> opener) and small frame helpers.

A source yields ``(H, W, 3) uint8 RGB`` frames; positions are 0-based indices into the clip's frames
and ``frame_numbers`` gives the source frame number of each position.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

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


def size_changed(what: str, size: tuple[int, ...], expected: tuple[int, ...], whose: str) -> str:
    """The ``frame_size_changed`` message: ``what`` is WxH where ``whose`` frames are W0xH0."""
    h, w = int(size[0]), int(size[1])
    h0, w0 = int(expected[0]), int(expected[1])
    return (
        f"{what} is {w}x{h} pixels but {whose} frames are {w0}x{h0}; a clip must keep one frame size "
        "(a resized or foreign frame would be aligned with the wrong transform): re-extract or resize "
        "that frame, or remove the clip"
    )


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
