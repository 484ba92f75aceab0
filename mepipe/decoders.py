"""Video decoders behind one frame-source interface: PyAV (the default) and decord (optional extra).

Both decode a file front to back into ``(H, W, 3) uint8 RGB`` frames; positions are 0-based indices
of decoded frames in presentation order, ``frame_numbers`` the file's own frame indices (a clip may
be a contiguous interval of a long video) and ``timestamps_ms`` the container's presentation times.
Which one a build uses is ``video.decoder`` (part of the config hash: the two can round colour
conversion differently, so a build never mixes them).

Why PyAV is the default (``benchmarks/video_decode.py``; README, "Video decoders"): it is a required
dependency anyway (it re-decodes damaged files deterministically), it decodes synchronously, so a
damaged frame is reported at the same frame on every run, and the benchmark did not show decord
clearly faster on our clips. decord stays available as ``video.decoder: decord``
(``pip install mepipe[decord]``).

Errors are :class:`~mepipe.sources.FrameReadError` with a manifest reason: ``missing_file``,
``empty_video`` (zero bytes), ``unreadable_video`` (not a video, or its container cannot be
parsed), ``no_frames``, ``keyframe_not_on_disk`` (frames beyond the end of the file),
``corrupt_video`` (naming the first frame that cannot be decoded), ``frame_size_changed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mepipe.framesource import SOURCES, FrameReadError, FrameSource, as_rgb, first_line, size_changed
from mepipe.provenance import file_sha256
from mepipe.records import ClipRecord
from mepipe.registry import Registry

DEFAULT_DECODER = "pyav"


class VideoSource(FrameSource):
    """A video file (``clip.source_path``), decoded in order; subclasses bind a decoder library.

    Positions map to decoded frames: by default every frame of the file (``frame_numbers`` =
    ``0 .. N-1``); a clip whose ``frame_numbers`` are set (an interval of a long video) gets only those
    frames, which must be a contiguous ascending range. ``fps`` is the container's average rate and
    ``timestamps_ms`` the container's presentation times, so variable-frame-rate files keep their real
    timing (they are also reported in ``notes``).

    Args:
        clip: a ``source_kind="video"`` record.
        decode_threads: decoder threads (0: the library's automatic choice; 1 suits one process per core).
    """

    random_access = False
    decoder = ""

    def __init__(self, clip: ClipRecord, *, decode_threads: int = 1, **_: object) -> None:
        self.path = Path(clip.source_path)
        self.notes = []
        self._threads = decode_threads
        self._size: tuple[int, int] | None = None  # (H, W) every frame must have
        if not self.path.is_file():
            raise FrameReadError("missing_file", f"{self.path}: video file not found; check --source")
        if self.path.stat().st_size == 0:
            raise FrameReadError("empty_video", f"{self.path}: zero-length file; re-copy it from the archive")
        try:
            pts_ms, fps = self._open()
        except FrameReadError:
            raise
        except Exception as exc:  # noqa: BLE001  (each library raises its own error types)
            raise FrameReadError(
                "unreadable_video",
                f"{self.path}: cannot be opened as a video ({first_line(exc)}); the file is corrupt, "
                "truncated or not a video; re-copy it from the archive",
            ) from None
        n_file = len(pts_ms)
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
        self.fps = fps if np.isfinite(fps) and fps > 0 else float(clip.fps)
        self._ts = np.asarray(pts_ms[wanted[0] : wanted[-1] + 1], dtype=np.float64)
        note = variable_rate_note(np.asarray(pts_ms, dtype=np.float64))
        if note:
            self.notes.append(note)

    # -- what a decoder provides -------------------------------------------------------------------
    def _open(self) -> tuple[np.ndarray, float]:
        """Open the file; return ``((N,) presentation times in ms of every frame, average fps)``."""
        raise NotImplementedError

    def _decode(self, number: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(file frame number, RGB frame)`` from file frame ``number`` on, in order (one seek)."""
        raise NotImplementedError

    # -- the frame-source interface ----------------------------------------------------------------
    def read(self, i: int) -> np.ndarray:
        """Indexed read (a seek; slow on long-GOP files: prefer :meth:`iter_range`)."""
        for _, frame in self.iter_range(i, i + 1):
            return frame
        raise FrameReadError("corrupt_video", f"{self.path}: frame {self.frame_numbers[i]} cannot be decoded")

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """Decode positions ``start .. stop-1`` in order: one accurate seek, then sequential decode.

        Raises:
            FrameReadError: ``corrupt_video`` naming the first frame that cannot be decoded (or that
                the decoder skipped), ``frame_size_changed`` naming the first frame whose size differs.
        """
        stop = min(stop, len(self))
        if start >= stop:
            return
        first = self.frame_numbers[0]
        want = start
        why = "decoding ended early"
        try:
            for number, frame in self._decode(first + start):
                pos = number - first
                if pos < want:
                    continue
                if pos > want:
                    why = f"the decoder skipped frames {first + want}..{number - 1}"
                    break
                self._check_size(frame, number)
                yield pos, frame
                want += 1
                if want >= stop:
                    return
        except FrameReadError:
            raise
        except Exception as exc:  # noqa: BLE001  (av.error.* / DECORDError: report the frame)
            why = first_line(exc)
        raise FrameReadError(
            "corrupt_video",
            f"{self.path}: frame {first + want} cannot be decoded ({why}); the file is damaged or "
            f"truncated (only the first {want} of {len(self)} frames decode); re-copy it from the archive",
        )

    def _check_size(self, frame: np.ndarray, number: int) -> None:
        if self._size is None:
            self._size = (frame.shape[0], frame.shape[1])
        elif (frame.shape[0], frame.shape[1]) != self._size:
            raise FrameReadError(
                "frame_size_changed",
                size_changed(f"{self.path}: frame {number}", frame.shape[:2], self._size, "the video's"),
            )

    def timestamps_ms(self) -> np.ndarray:
        return self._ts.copy()

    def file_checksum(self) -> str:
        return file_sha256(self.path)


DECODERS: Registry[type[VideoSource]] = Registry("video decoder")


def pyav_index(path: Path) -> tuple[int, np.ndarray | None, float, float, tuple[int, int] | None]:
    """Demux ``path`` once without decoding.

    Returns:
        ``(n, pts, time_base, fps, (H, W))``: the number of frames of the first video stream, their
        sorted ``(n,) int64`` presentation timestamps (``None`` when some are missing or repeated),
        the stream's time base in seconds, its average frame rate and the coded frame size (``None``
        if the container does not say).
    """
    import av

    with av.open(str(path)) as c:
        if not c.streams.video:
            raise FrameReadError("no_frames", f"{path}: the container holds no video stream")
        s = c.streams.video[0]
        tb = float(s.time_base) if s.time_base else 0.0
        pts = [pkt.pts if pkt.pts is not None else pkt.dts for pkt in c.demux(s) if pkt.size > 0]
        rate = s.average_rate or s.guessed_rate
        fps = float(rate) if rate else 0.0
        h, w = int(s.codec_context.height), int(s.codec_context.width)
    size = (h, w) if h > 0 and w > 0 else None
    if pts and tb > 0 and all(p is not None for p in pts):
        ordered = np.sort(np.asarray(pts, dtype=np.int64))
        if len(np.unique(ordered)) == len(ordered):
            return len(pts), ordered, tb, fps, size
    return len(pts), None, tb, fps, size


def pyav_frames(
    path: Path, pts: np.ndarray | None, number: int, threads: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """``(file frame number, RGB frame)`` from file frame ``number`` on, decoded synchronously.

    Frames are placed by their timestamp (``pts`` from :func:`pyav_index`), so a frame the decoder
    drops shows up as a gap; without timestamps they are counted from the start of the file.
    """
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if threads != 1:
            s.thread_type = "AUTO"
        s.codec_context.thread_count = threads
        by_pts = {int(p): k for k, p in enumerate(pts)} if pts is not None else None
        counted: int | None = -1
        if number > 0 and pts is not None:
            c.seek(int(pts[number]), stream=s, backward=True, any_frame=False)
            counted = None  # after a seek only timestamps say where we are
        for frame in c.decode(s):
            if by_pts is not None and frame.pts is not None and int(frame.pts) in by_pts:
                k = by_pts[int(frame.pts)]
            elif counted is not None:
                k = counted + 1
            else:
                continue
            counted = k
            if k >= number:
                yield k, as_rgb(frame.to_ndarray(format="rgb24"))


@DECODERS.register("pyav")
class PyAVSource(VideoSource):
    """PyAV (FFmpeg) decoding, synchronous: a damaged frame fails at the same frame on every run.

    Opening demuxes the file once without decoding (packet timestamps give the frame count and the
    presentation times; cheap next to decoding).
    """

    decoder = "pyav"

    def _open(self) -> tuple[np.ndarray, float]:
        n, pts, tb, fps, self._size = pyav_index(self.path)
        self._pts = pts
        if pts is not None:
            return pts * tb * 1000.0, fps
        return np.arange(n) * (1000.0 / (fps or 1.0)), fps  # no usable timestamps: index / fps

    def _decode(self, number: int) -> Iterator[tuple[int, np.ndarray]]:
        return pyav_frames(self.path, self._pts, number, self._threads)


def _decord():
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own messages; failures raise anyway
    return decord


@DECODERS.register("decord")
class DecordSource(VideoSource):
    """decord decoding (``pip install mepipe[decord]``).

    decord decodes ahead in its own thread, so *where* a decode error surfaces depends on how fast the
    caller consumes frames. After an error the file is therefore decoded again with PyAV
    (synchronously) from the clip's first frame, and the frames up to where that decode stops are
    delivered: the failing frame is the same on every run.
    """

    decoder = "decord"

    def _reader(self):
        d = _decord()
        return d.VideoReader(str(self.path), ctx=d.cpu(0), num_threads=self._threads)

    def _open(self) -> tuple[np.ndarray, float]:
        self._vr = self._reader()
        n = len(self._vr)
        if n == 0:
            return np.zeros(0), 0.0
        pts = np.asarray(self._vr.get_frame_timestamp(list(range(n))), dtype=np.float64)
        return pts[:, 0] * 1000.0, float(self._vr.get_avg_fps() or 0.0)

    def _decode(self, number: int) -> Iterator[tuple[int, np.ndarray]]:
        k = number
        try:
            vr = self._reader()
            if number == 0:
                vr.seek(0)
            else:
                vr.seek_accurate(number)
            while k < self.n_file_frames:
                frame = vr.next().asnumpy()
                yield k, as_rgb(frame)
                k += 1
            return
        except StopIteration:
            pass
        except Exception:  # noqa: BLE001  (DECORDError: locate the failure synchronously below)
            pass
        # decode again synchronously with PyAV from the clip's first frame; continue where decord stopped
        pts = pyav_index(self.path)[1]
        for item in pyav_frames(self.path, pts, self.frame_numbers[0]):
            if item[0] >= k:
                yield item

    def close(self) -> None:
        self._vr = None


def open_video(clip: ClipRecord, *, decode_threads: int = 1, decoder: str = DEFAULT_DECODER) -> VideoSource:
    """The video source for ``clip`` with the registered ``decoder`` (``pyav`` or ``decord``)."""
    return DECODERS.get(decoder)(clip, decode_threads=decode_threads)


def decoder_available(name: str) -> str:
    """``''`` when the decoder ``name`` can be used here, else a sentence saying how to install it."""
    DECODERS.get(name)
    module = {"pyav": "av", "decord": "decord"}[name]
    try:
        __import__(module)
    except ImportError:
        return f"video.decoder {name!r} needs the {module!r} package: pip install 'mepipe[{name}]'"
    return ""


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


@SOURCES.register("video")
def _open_video(clip: ClipRecord, *, decode_threads: int = 1, decoder: str | None = None) -> FrameSource:
    return open_video(clip, decode_threads=decode_threads, decoder=decoder or DEFAULT_DECODER)
