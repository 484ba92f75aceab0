"""Frame sources: one interface over a folder of frame images and over video files.

A source yields ``(H, W, 3) uint8 RGB`` frames; grayscale inputs are replicated to three channels.
Positions are 0-based indices into the clip's frames; ``frame_numbers`` gives the source frame
number of each position (for videos: the 0-based index of the decoded frame in the file) and
``timestamps_ms`` its presentation time in milliseconds.

Access patterns: image folders are read in any order (``random_access = True``). Videos must be
decoded in order: a seek into long-GOP H.264 decodes from the previous key frame, so indexed reads
run at ~20 frames/s against ~1,500 frames/s sequentially (``shared/reference/environment.md`` §5).
The build therefore iterates a video once, front to back (:meth:`FrameSource.iter_range`).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from mepipe.provenance import file_sha256
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


SOURCES: Registry[type[FrameSource]] = Registry("frame source")


def is_truncated_jpeg(data: bytes) -> bool:
    """True when JPEG bytes lack the end-of-image marker (libjpeg would decode them with grey rows)."""
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]


@SOURCES.register("images")
class ImageFolderSource(FrameSource):
    """Frames stored as image files (``clip.frame_files`` under ``clip.source_path``)."""

    def __init__(self, clip: ClipRecord, **_: object) -> None:
        self.folder = Path(clip.source_path)
        self.files = list(clip.frame_files)
        self.frame_numbers = list(clip.frame_numbers)
        self.fps = clip.fps
        self.notes = []
        self._sha: dict[int, str] = {}

    def read(self, i: int) -> np.ndarray:
        path = self.folder / self.files[i]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FrameReadError("unreadable_frame", f"{path}: cannot be read ({exc.strerror})") from None
        self._sha[i] = hashlib.sha256(data).hexdigest()
        if path.suffix.lower() in (".jpg", ".jpeg") and is_truncated_jpeg(data):
            raise FrameReadError(
                "corrupt_frame", f"{path}: truncated JPEG (no end marker); re-extract this frame"
            )
        import cv2  # lazily: mepipe.datasets (and so label schemes, folds, training) must import without OpenCV

        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise FrameReadError("corrupt_frame", f"{path}: not a decodable image; re-extract this frame")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def checksum(self, i: int) -> str:
        if i not in self._sha:
            self._sha[i] = hashlib.sha256((self.folder / self.files[i]).read_bytes()).hexdigest()
        return self._sha[i]


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


def _decord():
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own messages; failures raise anyway
    return decord


@SOURCES.register("video")
class VideoSource(FrameSource):
    """A video file decoded with decord (``clip.source_path``).

    Positions map to decoded frames: by default every frame of the file (``frame_numbers`` =
    ``0 .. N-1``); a clip whose ``frame_numbers`` are set (an interval of a long video) gets only those
    frames, which must be a contiguous ascending range. ``fps`` is the container's average rate and
    ``timestamps_ms`` the container's presentation times, so variable-frame-rate files keep their real
    timing (they are also reported in ``notes``).

    Args:
        clip: a ``source_kind="video"`` record.
        decode_threads: decoder threads (0: decord's automatic choice; 1 suits one process per core).

    Raises:
        FrameReadError: ``missing_file``, ``empty_video`` (zero bytes), ``unreadable_video`` (not a
            video, or truncated so that the container cannot be parsed), ``no_frames``,
            ``keyframe_not_on_disk`` (requested frames beyond the end of the file).
    """

    random_access = False

    def __init__(self, clip: ClipRecord, *, decode_threads: int = 1) -> None:
        self.path = Path(clip.source_path)
        self.notes = []
        if not self.path.is_file():
            raise FrameReadError("missing_file", f"{self.path}: video file not found; check --source")
        if self.path.stat().st_size == 0:
            raise FrameReadError("empty_video", f"{self.path}: zero-length file; re-copy it from the archive")
        decord = _decord()
        self._threads = decode_threads
        try:
            self._vr = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=decode_threads)
            n_file = len(self._vr)
        except Exception as exc:  # noqa: BLE001  (decord raises RuntimeError or DECORDError)
            raise FrameReadError(
                "unreadable_video",
                f"{self.path}: cannot be opened as a video ({_first_line(exc)}); the file is corrupt, "
                "truncated or not a video; re-copy it from the archive",
            ) from None
        self.n_file_frames = n_file
        if n_file == 0:
            raise FrameReadError("no_frames", f"{self.path}: the container holds no video frames")
        wanted = list(clip.frame_numbers) or list(range(n_file))
        if wanted != list(range(wanted[0], wanted[0] + len(wanted))) or wanted[0] < 0:
            raise ValueError(
                f"{self.path}: video frame_numbers must be a contiguous ascending range, got "
                f"{wanted[0]}..{wanted[-1]} ({len(wanted)} numbers)"
            )
        if wanted[-1] >= n_file:
            raise FrameReadError(
                "keyframe_not_on_disk",
                f"{self.path}: frames {wanted[0]}..{wanted[-1]} requested but the file has {n_file} "
                f"(0..{n_file - 1}); check the annotation or the file",
            )
        self.frame_numbers = wanted
        fps = float(self._vr.get_avg_fps() or 0.0)
        self.fps = fps if np.isfinite(fps) and fps > 0 else float(clip.fps)
        pts = np.asarray(self._vr.get_frame_timestamp(list(range(n_file))), dtype=np.float64)
        self._ts = pts[wanted[0] : wanted[-1] + 1, 0] * 1000.0
        note = variable_rate_note(pts[:, 0] * 1000.0)
        if note:
            self.notes.append(note)
        self._next = None  # position the decoder will return next (None: unknown)

    def read(self, i: int) -> np.ndarray:
        """Indexed read (a seek; slow on long-GOP files: prefer :meth:`iter_range`)."""
        number = self.frame_numbers[i]
        try:
            frame = self._vr[number].asnumpy()
        except Exception as exc:  # noqa: BLE001
            raise FrameReadError(
                "corrupt_video",
                f"{self.path}: frame {number} cannot be decoded "
                f"({_first_line(exc)}); re-copy the file from the archive",
            ) from None
        self._next = None
        return _as_rgb(frame)

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """Decode positions ``start .. stop-1`` in order: one (accurate) seek, then sequential decode.

        decord decodes ahead in its own thread, so *where* a decode error surfaces depends on how fast
        the caller consumes frames. After an error the file is therefore decoded again in a tight loop,
        and the frames up to where that decode stops are still delivered: the failing frame is the same
        on every run.

        Raises:
            FrameReadError: ``corrupt_video`` naming the first frame that cannot be decoded.
        """
        stop = min(stop, len(self))
        if start >= stop:
            return
        i = start
        try:
            if self._next != start:
                self._seek(self._vr, start)
            while i < stop:
                self._next = None
                frame = self._vr.next().asnumpy()
                self._next = i + 1
                yield i, _as_rgb(frame)
                i += 1
            return
        except StopIteration:
            why = "decoding ended early"
        except Exception as exc:  # noqa: BLE001  (DECORDError and friends)
            why = _first_line(exc)
        good, tail = self._tight_decode(i, stop)
        for k, frame in enumerate(tail):
            yield i + k, frame
        if good < stop:
            raise FrameReadError(
                "corrupt_video",
                f"{self.path}: frame {self.frame_numbers[good]} cannot be decoded ({why}); the "
                f"file is damaged or truncated (only the first {good} of {len(self)} frames decode); re-copy it "
                "from the archive",
            )

    def _seek(self, vr, pos: int) -> None:
        number = self.frame_numbers[pos]
        if number == 0:
            vr.seek(0)
        else:
            vr.seek_accurate(number)

    def _tight_decode(self, keep_from: int, stop: int) -> tuple[int, list[np.ndarray]]:
        """Decode the file again from its first wanted frame, synchronously, until ``stop`` or the first
        failure; returns (positions decoded, the frames from position ``keep_from`` on).

        With PyAV installed (``pip install av``) the decode is synchronous, so the failing frame is the
        same on every run (PyAV and decord use the same FFmpeg conversion: identical pixels). Without
        it, decord is used in a tight loop, where its read-ahead can still move the failure by a frame.
        """
        first = self.frame_numbers[0]
        tail: list[np.ndarray] = []
        pos = 0
        try:
            import av
        except ImportError:
            av = None
        if av is not None:
            try:
                with av.open(str(self.path)) as container:
                    for k, frame in enumerate(container.decode(video=0)):
                        if k < first:
                            continue
                        if pos >= keep_from:
                            tail.append(_as_rgb(frame.to_ndarray(format="rgb24")))
                        pos += 1
                        if pos >= stop:
                            break
            except Exception:  # noqa: BLE001  (av.error.*: stop at the first frame that fails)
                pass
        else:
            self.notes.append(
                "decord's read-ahead makes the exact failing frame uncertain; install PyAV (av) "
                "for a deterministic result"
            )
            try:
                vr = _decord().VideoReader(str(self.path), ctx=_decord().cpu(0), num_threads=self._threads)
                self._seek(vr, 0)
                while pos < stop:
                    frame = vr.next().asnumpy()
                    if pos >= keep_from:
                        tail.append(_as_rgb(frame))
                    pos += 1
            except Exception:  # noqa: BLE001  (StopIteration or a decode error: stop there)
                pass
        try:  # a fresh reader for later calls (the old one is stuck on the error)
            self._vr = _decord().VideoReader(str(self.path), ctx=_decord().cpu(0), num_threads=self._threads)
        except Exception:  # noqa: BLE001
            self._vr = None
        self._next = None
        return pos, tail

    def timestamps_ms(self) -> np.ndarray:
        return self._ts.copy()

    def file_checksum(self) -> str:
        return file_sha256(self.path)

    def close(self) -> None:
        self._vr = None


def variable_rate_note(ts_ms: np.ndarray, tolerance: float = 0.1) -> str:
    """A sentence when the frame intervals of ``ts_ms`` (``(N,)`` ms, presentation order) vary by more
    than ``tolerance`` of their median, else ``''``."""
    d = np.diff(np.asarray(ts_ms, dtype=np.float64))
    if len(d) < 2:
        return ""
    med = float(np.median(d))
    if med <= 0 or (d.max() - d.min()) <= tolerance * med:
        return ""
    return (
        f"variable frame rate: frame intervals {d.min():.1f}..{d.max():.1f} ms (median {med:.1f}); "
        "fps is the container average, timestamps_ms holds the real times"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
    if frame.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(frame, 3, axis=2))
    return np.ascontiguousarray(frame[:, :, :3])


def open_source(clip: ClipRecord, *, decode_threads: int = 1) -> FrameSource:
    """The frame source for a clip, chosen by ``clip.source_kind``.

    Args:
        decode_threads: video decoder threads (ignored for image folders).
    """
    return SOURCES.get(clip.source_kind)(clip, decode_threads=decode_threads)


def is_video_file(path: str | os.PathLike) -> bool:
    """True when ``path``'s suffix is a known video container suffix (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
