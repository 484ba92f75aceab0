"""Streaming one clip into a shard: frames appended in chunks, never all in memory.

:class:`ClipWriter` is what :meth:`mepipe.shards.writer.ShardWriter.begin_clip` returns; the whole-clip
path (:meth:`ShardWriter.add`) goes through it too, so both write byte-identical groups.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from mepipe.records import ClipRecord
from mepipe.shards.format import CLIPS_GROUP, ClipOutput, encode_jpeg, write_metadata

if TYPE_CHECKING:
    from mepipe.shards.writer import ShardWriter

SCRATCH_DIR = "scratch"
"""Folder inside OUT holding the scratch files of subset clips while they are written."""


class ClipWriter:
    """One clip being streamed into a shard (from :meth:`ShardWriter.begin_clip`).

    Frames are appended in order, in chunks of any length (:meth:`append` arrays, or
    :meth:`append_encoded` JPEG bytes), into a resizable dataset chunked one frame per chunk
    (``frames``, raw) or a resizable variable-length dataset (``frames_jpeg``). :attr:`digest` grows
    as frames are stored and equals the ``frames_sha256`` of the same frames stored whole (raw:
    sha256 of the C-order bytes; JPEG: :func:`~mepipe.shards.writer.jpeg_digest`).

    ``subset`` clips (the frames to keep are known only at the end, e.g. ``storage.frame_step`` with
    estimated keyframes) append raw frames to a scratch HDF5 file in ``OUT/scratch/``; :meth:`finish`
    copies the kept ones into the shard one frame at a time (encoding them if the clip is JPEG) and
    deletes the scratch file. :meth:`abort` removes the clip's group and scratch file, so a shard never
    holds part of a clip; nothing is visible to readers before the shard itself is renamed.
    """

    def __init__(
        self,
        writer: ShardWriter,
        clip: ClipRecord,
        frame_shape: tuple[int, ...],
        encoding: str,
        jpeg_quality: int,
        subset: bool,
        digest: str = "",
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
        self.appended = 0  # frames appended (subset clips: in the scratch file)
        self.nbytes = 0  # bytes of stored frame data
        self._sha = hashlib.sha256()
        self._known = "" if subset else digest  # given by a caller that hashed the same frames already
        self._done = False
        self.group = f[CLIPS_GROUP].create_group(clip.key)
        self._scratch: h5py.File | None = None
        self._scratch_path: Path | None = None
        self._scratch_ds = None
        self._ds = None
        if subset:
            folder = writer.out_dir / SCRATCH_DIR
            folder.mkdir(exist_ok=True)
            tmp_name = writer._tmp.name if writer._tmp is not None else "shard"
            self._scratch_path = folder / f"{tmp_name}.clip{writer._n}.h5"
            self._scratch = h5py.File(self._scratch_path, "w", locking=False)
            self._scratch_ds = self._raw_dataset(self._scratch)
        else:
            self._ds = self._shard_dataset()

    def _raw_dataset(self, parent):
        s = self.shape
        return parent.create_dataset(
            "frames", shape=(0, *s), maxshape=(None, *s), chunks=(1, *s), dtype=np.uint8
        )

    def _shard_dataset(self):
        if self.encoding == "raw":
            return self._raw_dataset(self.group)
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
        self.appended += len(frames)
        if self._scratch_ds is not None:
            _extend(self._scratch_ds, frames)
        else:
            self._store(frames)

    def append_encoded(self, blobs) -> None:
        """Append already encoded JPEG frames (``jpeg`` clips without ``subset``), in order."""
        if self.encoding != "jpeg" or self._scratch_ds is not None:
            raise ValueError(f"clip {self.key}: encoded frames need encoding='jpeg' and subset=False")
        blobs = [bytes(b) for b in blobs]
        self.appended += len(blobs)
        self._store_encoded(blobs)

    def _store(self, frames: np.ndarray) -> None:
        if self.encoding == "jpeg":
            self._store_encoded(encode_jpeg(frames, self.jpeg_quality))
            return
        frames = np.ascontiguousarray(frames)
        _extend(self._ds, frames)
        if not self._known:
            self._sha.update(memoryview(frames).cast("B"))
        self.nbytes += frames.nbytes
        self.n += len(frames)

    def _store_encoded(self, blobs: list[bytes]) -> None:
        ds = self._ds
        start = ds.shape[0]
        ds.resize((start + len(blobs),))
        for k, b in enumerate(blobs):
            ds[start + k] = np.frombuffer(b, dtype=np.uint8)
            if not self._known:
                self._sha.update(b)
            self.nbytes += len(b)
        self.n += len(blobs)

    def finish(self, meta: ClipOutput, keep: np.ndarray | None = None) -> str:
        """Write the clip's per-frame arrays and attributes, and complete it.

        Args:
            meta: everything but the frames: its ``frames``/``frames_jpeg`` are ignored, its
                ``frame_numbers`` (and the other per-frame arrays) must have one entry per *stored*
                frame, and the group's ``frames_sha256`` is this writer's :attr:`digest`.
            keep: ``subset`` clips: ascending positions (0-based, into the appended frames) to store;
                ``None`` stores them all. Not allowed for other clips.

        Returns:
            the final name of the shard file holding the clip.
        """
        try:
            if self._scratch_ds is not None:
                self._copy_kept(keep)
            elif keep is not None:
                raise ValueError(f"clip {self.key}: keep= needs begin_clip(subset=True)")
            if len(meta.frame_numbers) != self.n:
                raise ValueError(
                    f"clip {self.key}: {self.n} frames stored but {len(meta.frame_numbers)} frame "
                    "numbers given"
                )
            a = self.group.attrs
            a["frame_encoding"] = self.encoding
            if self.encoding == "jpeg":
                a["frame_shape"] = np.asarray(self.shape, dtype=np.int64)
                a["jpeg_quality"] = self.jpeg_quality
            write_metadata(self.group, meta, self.digest)
        except BaseException:
            self.abort()
            raise
        self._close_scratch()
        self._done = True
        self.writer._clip_done(self, stored=True)
        return self.writer.current_name

    def _copy_kept(self, keep: np.ndarray | None) -> None:
        src = self._scratch_ds
        total = src.shape[0]
        idx = np.arange(total) if keep is None else np.asarray(keep, dtype=np.int64)
        if len(idx) and (idx[0] < 0 or idx[-1] >= total or np.any(np.diff(idx) <= 0)):
            raise ValueError(f"clip {self.key}: keep must be ascending positions in 0..{total - 1}")
        self._ds = self._shard_dataset()
        buf = np.empty((1, *self.shape), np.uint8)
        for i in idx:
            src.read_direct(buf, np.s_[int(i) : int(i) + 1])
            self._store(buf)

    def _close_scratch(self) -> None:
        self._scratch_ds = None
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None
        if self._scratch_path is not None:
            self._scratch_path.unlink(missing_ok=True)
            self._scratch_path = None

    def abort(self) -> None:
        """Remove the clip's group (and its scratch file): the shard keeps nothing of it."""
        if self._done:
            return
        self._done = True
        self._close_scratch()
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


def _extend(ds, frames: np.ndarray) -> None:
    """Append ``(n, ...)`` rows to a dataset resizable along axis 0."""
    start = ds.shape[0]
    ds.resize((start + len(frames), *ds.shape[1:]))
    ds[start : start + len(frames)] = frames
