"""Streaming one clip into a shard: frames appended in chunks, never all in memory.

:class:`ClipWriter` is what :meth:`mepipe.shards.writer.ShardWriter.begin_clip` returns; the whole-clip
path (:meth:`ShardWriter.add`) goes through it too, so both write byte-identical groups. The build's
per-clip processing (:func:`mepipe.process.stream_clip`) appends each aligned crop as the face stage
emits it and reads crops back from here (:meth:`ClipWriter.read`) to estimate keyframes and measure
stability.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import h5py
import numpy as np

from mepipe.records import ClipRecord
from mepipe.shards.format import CLIPS_GROUP, ClipOutput, encode_jpeg, write_metadata
from mepipe.shards.scratch import MEMORY_BYTES, SCRATCH_DIR, ScratchFrames

if TYPE_CHECKING:
    from mepipe.shards.writer import ShardWriter

__all__ = ["SCRATCH_DIR", "ClipWriter", "ShardWriteError"]

COPY_CHUNK = 16
"""Frames copied (and JPEG-encoded) per step when a held clip is stored."""


class ShardWriteError(OSError):
    """Writing a shard or a scratch file failed (disk full, permissions, an I/O error).

    Not a problem of the clip: the build stops (nothing of the task is listed) instead of recording
    a failed row, and the next run builds the clips again.
    """


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``what`` into a :class:`ShardWriteError` naming it."""
    try:
        yield
    except ShardWriteError:
        raise
    except OSError as exc:
        raise ShardWriteError(f"writing {what} failed: {exc}; check the free space and permissions") from exc


class ClipWriter:
    """One clip being streamed into a shard (from :meth:`ShardWriter.begin_clip`).

    Frames are appended in order, in chunks of any length (:meth:`append` arrays, or
    :meth:`append_encoded` JPEG bytes), into a resizable dataset chunked one frame per chunk
    (``frames``, raw) or a resizable variable-length dataset (``frames_jpeg``). :attr:`digest` grows
    as frames are stored and equals the ``frames_sha256`` of the same frames stored whole (raw:
    sha256 of the C-order bytes; JPEG: :func:`~mepipe.shards.format.jpeg_digest`).

    ``buffered`` clips hold their raw frames (:class:`~mepipe.shards.scratch.ScratchFrames`: in
    memory up to ``memory_bytes``, beyond that in a scratch file in ``OUT/scratch/``) until
    :meth:`store` copies the kept ones into the shard, a few at a time, encoding them if the clip is
    JPEG. This serves frame subsets known only at the end (``storage.frame_step`` with estimated
    keyframes) and JPEG clips whose exact raw crops must be read back (:meth:`read`).
    :meth:`abort` removes the clip's group and scratch file, so a shard never holds part of a clip;
    nothing is visible to readers before the shard itself is renamed.
    """

    def __init__(
        self,
        writer: ShardWriter,
        clip: ClipRecord,
        frame_shape: tuple[int, ...],
        encoding: str,
        jpeg_quality: int,
        buffered: bool,
        digest: str = "",
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        if encoding not in ("raw", "jpeg"):
            raise ValueError(f"unknown frame encoding {encoding!r}; use raw or jpeg")
        if len(frame_shape) != 3 or frame_shape[2] != 3:
            raise ValueError(f"clip {clip.key}: frame_shape must be (S, S, 3), got {frame_shape}")
        f = writer._file
        assert f is not None
        self.writer, self.clip, self.key = writer, clip, clip.key
        self.shape = tuple(int(v) for v in frame_shape)
        self.encoding, self.jpeg_quality = encoding, int(jpeg_quality)
        self.n = 0  # frames stored in the shard
        self.appended = 0  # frames appended (buffered clips: held until stored)
        self.nbytes = 0  # bytes of stored frame data
        self._sha = hashlib.sha256()
        self._known = "" if buffered else digest  # given by a caller that hashed the same frames already
        self.buffered = buffered
        self._done = False
        self._stored = not buffered
        self._held: ScratchFrames | None = None
        self._ds = None
        with writing(f"clip {self.key} into {writer.dir}"):
            self.group = f[CLIPS_GROUP].create_group(clip.key)
            if buffered:
                tmp_name = writer._tmp.name if writer._tmp is not None else "shard"
                path = writer.out_dir / SCRATCH_DIR / f"{tmp_name}.clip{writer._n}.h5"
                self._held = ScratchFrames(path, self.shape, memory_bytes)
            else:
                self._ds = self._shard_dataset()

    @property
    def scratch_path(self):
        """The scratch file of a buffered clip (it exists only once the frames outgrew memory)."""
        return self._held.path if self._held is not None else None

    def _shard_dataset(self):
        s = self.shape
        if self.encoding == "raw":
            return self.group.create_dataset(
                "frames", shape=(0, *s), maxshape=(None, *s), chunks=(1, *s), dtype=np.uint8
            )
        return self.group.create_dataset(
            "frames_jpeg", shape=(0,), maxshape=(None,), chunks=(64,), dtype=h5py.vlen_dtype(np.uint8)
        )

    @property
    def digest(self) -> str:
        """sha256 of the frames stored so far (the clip's ``frames_sha256`` once all are stored), or
        the digest given to :meth:`ShardWriter.begin_clip` (then the frames are not hashed again)."""
        return self._known or self._sha.hexdigest()

    def append(self, frames: np.ndarray) -> None:
        """Append ``(n, S, S, 3) uint8`` RGB frames (or one ``(S, S, 3)`` frame), in order."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[np.newaxis]
        if frames.shape[1:] != self.shape or frames.dtype != np.uint8:
            raise ValueError(
                f"clip {self.key}: appended frames are {frames.shape[1:]} {frames.dtype}, expected "
                f"{self.shape} uint8"
            )
        if self.buffered and self._stored:
            raise ValueError(f"clip {self.key}: its frames were stored already; nothing can be appended")
        self.appended += len(frames)
        if self._held is not None:
            with writing(f"the scratch file {self._held.path}"):
                self._held.append(frames)
        else:
            self._store(frames)

    def append_encoded(self, blobs) -> None:
        """Append already encoded JPEG frames (``jpeg`` clips that are not ``buffered``), in order."""
        if self.encoding != "jpeg" or self._held is not None:
            raise ValueError(f"clip {self.key}: encoded frames need encoding='jpeg' and buffered=False")
        blobs = [bytes(b) for b in blobs]
        self.appended += len(blobs)
        self._store_encoded(blobs)

    def read(self, i: int) -> np.ndarray:
        """Appended frame ``i`` (0-based) as a new ``(S, S, 3) uint8`` RGB array, exactly as appended.

        Available for ``buffered`` clips until :meth:`store`, and for raw clips written straight into
        the shard; not for JPEG clips that are not buffered (only their JPEG bytes exist).
        """
        if self._held is not None:
            return self._held.read(i)
        if self.encoding == "raw" and self._ds is not None and not self.buffered:
            if not 0 <= i < self.n:
                raise IndexError(f"clip {self.key}: frame {i} was not appended (0..{self.n - 1} were)")
            out = np.empty(self.shape, np.uint8)
            self._ds.read_direct(out[np.newaxis], np.s_[i : i + 1])
            return out
        raise ValueError(
            f"clip {self.key}: raw frames cannot be read back (JPEG clips need buffered=True, and held "
            "frames are gone once stored)"
        )

    def _store(self, frames: np.ndarray) -> None:
        if self.encoding == "jpeg":
            self._store_encoded(encode_jpeg(frames, self.jpeg_quality))
            return
        frames = np.ascontiguousarray(frames)
        with writing(f"clip {self.key} into {self.writer.dir}"):
            start = self._ds.shape[0]
            self._ds.resize((start + len(frames), *self.shape))
            self._ds[start : start + len(frames)] = frames
        if not self._known:
            self._sha.update(memoryview(frames).cast("B"))
        self.nbytes += frames.nbytes
        self.n += len(frames)

    def _store_encoded(self, blobs: list[bytes]) -> None:
        ds = self._ds
        with writing(f"clip {self.key} into {self.writer.dir}"):
            start = ds.shape[0]
            ds.resize((start + len(blobs),))
            for k, b in enumerate(blobs):
                ds[start + k] = np.frombuffer(b, dtype=np.uint8)
        for b in blobs:
            if not self._known:
                self._sha.update(b)
            self.nbytes += len(b)
        self.n += len(blobs)

    def store(self, keep: np.ndarray | None = None) -> None:
        """Put the frames to keep into the shard; afterwards :attr:`digest` and :attr:`n` are final.

        Args:
            keep: ``buffered`` clips: ascending positions (0-based, into the appended frames) to store;
                ``None`` stores them all. Not allowed for other clips (their frames are stored as
                they are appended).
        """
        if self._stored:
            if keep is not None:
                raise ValueError(f"clip {self.key}: keep= needs begin_clip(buffered=True), before store()")
            return
        held = self._held
        assert held is not None
        total = len(held)
        idx = np.arange(total) if keep is None else np.asarray(keep, dtype=np.int64)
        if len(idx) and (idx[0] < 0 or idx[-1] >= total or np.any(np.diff(idx) <= 0)):
            raise ValueError(f"clip {self.key}: keep must be ascending positions in 0..{total - 1}")
        with writing(f"clip {self.key} into {self.writer.dir}"):
            self._ds = self._shard_dataset()
        buf = np.empty((COPY_CHUNK, *self.shape), np.uint8)
        with writing(f"the scratch file {held.path}"):
            for start in range(0, len(idx), COPY_CHUNK):
                part = idx[start : start + COPY_CHUNK]
                for k, i in enumerate(part):
                    held.read(int(i), buf[k])
                self._store(buf[: len(part)])
        self._close_held()
        self._stored = True

    def finish(
        self,
        meta: ClipOutput,
        keep: np.ndarray | None = None,
        then: Callable[[h5py.Group], None] | None = None,
    ) -> str:
        """Store the frames (if :meth:`store` was not called), write the clip's per-frame arrays and
        attributes, and complete it. Whatever fails aborts the clip.

        Args:
            meta: everything but the frames: its ``frames``/``frames_jpeg`` are ignored, its
                ``frame_numbers`` (and the other per-frame arrays) must have one entry per *stored*
                frame, and the group's ``frames_sha256`` is this writer's :attr:`digest`.
            keep: see :meth:`store`.
            then: writes more into the finished group (e.g. optical flow, read from the stored
                frames) before the clip counts as complete.

        Returns:
            the final name of the shard file holding it.
        """
        try:
            self.store(keep)
            if len(meta.frame_numbers) != self.n:
                raise ValueError(
                    f"clip {self.key}: {self.n} frames stored but {len(meta.frame_numbers)} frame "
                    "numbers given"
                )
            with writing(f"clip {self.key} into {self.writer.dir}"):
                a = self.group.attrs
                a["frame_encoding"] = self.encoding
                if self.encoding == "jpeg":
                    a["frame_shape"] = np.asarray(self.shape, dtype=np.int64)
                    a["jpeg_quality"] = self.jpeg_quality
                write_metadata(self.group, meta, self.digest)
            if then is not None:
                with writing(f"clip {self.key} into {self.writer.dir}"):
                    then(self.group)
        except BaseException:
            self.abort()
            raise
        self._done = True
        self.writer._clip_done(self, stored=True)
        return self.writer.current_name

    def _close_held(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def abort(self) -> None:
        """Remove the clip's group (and its scratch file): the shard keeps nothing of it."""
        if self._done:
            return
        self._done = True
        self._close_held()
        f = self.writer._file
        if f is not None:
            path = f"{CLIPS_GROUP}/{self.key}"
            if path in f:
                del f[path]
            parent = path.rsplit("/", 1)[0]
            while parent != CLIPS_GROUP and parent in f and len(f[parent]) == 0:
                del f[parent]
                parent = parent.rsplit("/", 1)[0]
        self.writer._clip_done(self, stored=False)
