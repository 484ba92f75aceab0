"""Writing HDF5 shards: one group per clip, rolled over by clip count and by bytes.

Each shard is written as ``shard-NNNNN.h5.tmp`` and renamed to ``shard-NNNNN.h5`` only once closed,
so a crash never leaves a half-written file under a final name. The layout is documented in
``docs/shard-format.md`` and readable with plain h5py.

What a clip group holds (and the one JPEG encoder) is in :mod:`mepipe.shards.format`; one clip is
streamed into a shard by :class:`~mepipe.shards.clipwriter.ClipWriter`.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import h5py

from mepipe import __version__
from mepipe.records import ClipRecord
from mepipe.shards import scratch
from mepipe.shards.clipwriter import ClipWriter, writing
from mepipe.shards.format import (
    CLIPS_GROUP,
    FLOW_SCHEMA_VERSION,
    JPEG_SCHEMA_VERSION,
    RAW_SCHEMA_VERSION,
    SCHEMA_NAME,
    ClipOutput,
)


class ShardWriter:
    """Appends clips to shard files under ``out_dir/shards/``, starting a new shard when the current
    one holds ``max_clips`` clips or ``max_bytes`` bytes of frames.

    Shards are written as ``<name>.h5.tmp`` and renamed to ``<name>.h5`` once closed; the rename never
    replaces an existing file. Names: with ``name`` (the build engine's tasks: ``shard-00042``) the
    first shard is ``shard-00042.h5`` and any further ones (a task whose clips exceed ``max_bytes``)
    ``shard-00042-1.h5``, ``shard-00042-2.h5`` ...; without it ``shard-NNNNN.h5`` numbered after the
    shards already in the folder.

    Clips are stored whole (:meth:`add`, a :class:`ClipOutput` holding its frames) or streamed
    (:meth:`begin_clip`, then :meth:`ClipWriter.append` in chunks and :meth:`ClipWriter.finish`).

    Args:
        out_dir: build output folder.
        file_attrs: attributes written on every shard's root (config hash, backends, model hashes ...).
        name: base name of this writer's shards (see above), or ``None``.
        on_shard_closed: called with the final shard file name after each rename.
        memory_bytes: raw frames a ``buffered`` clip holds in memory before it moves to a scratch
            file (``None``: :data:`mepipe.shards.scratch.MEMORY_BYTES`).

    A ``flow_hash`` in ``file_attrs`` (a build that computes optical flow, :mod:`mepipe.flow_stage`)
    makes the shards schema version 3, as ``mepipe flow`` does.
    """

    def __init__(
        self,
        out_dir: Path,
        file_attrs: dict[str, str | int],
        *,
        max_clips: int,
        max_bytes: int,
        name: str | None = None,
        on_shard_closed=None,
        memory_bytes: int | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / "shards"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file_attrs = file_attrs
        self.max_clips, self.max_bytes = max_clips, max_bytes
        self.on_shard_closed = on_shard_closed
        self.name = name
        self.memory_bytes = scratch.MEMORY_BYTES if memory_bytes is None else int(memory_bytes)
        self._index = 0 if name else len(list(self.dir.glob("shard-*.h5")))
        self._file: h5py.File | None = None
        self._tmp: Path | None = None
        self._n = 0
        self._bytes = 0
        self._open_clip: ClipWriter | None = None
        self.closed_names: list[str] = []

    @property
    def current_name(self) -> str:
        if self.name:
            return f"{self.name}.h5" if self._index == 0 else f"{self.name}-{self._index}.h5"
        return f"shard-{self._index:05d}.h5"

    def add(self, out: ClipOutput) -> str:
        """Store one clip whose frames are in ``out`` (raw ``frames`` or encoded ``frames_jpeg``).

        ``out.frames_sha256``, when set, is taken as the digest of ``out``'s frames (the per-clip
        processing computed it from the same array; ``mepipe verify`` recomputes it from the file);
        when empty it is computed while writing.

        Returns:
            the (final) shard file name holding it.
        """
        encoding = "jpeg" if out.frames_jpeg is not None else "raw"
        shape = out.frame_shape or (tuple(out.frames.shape[1:]) if out.frames is not None else None)
        if shape is None:
            raise ValueError(f"clip {out.clip.key}: frames_jpeg needs frame_shape")
        cw = self.begin_clip(
            out.clip,
            frame_shape=shape,  # type: ignore[arg-type]
            encoding=encoding,
            jpeg_quality=out.jpeg_quality,
            expected_bytes=out.stored_nbytes,
            digest=out.frames_sha256,
        )
        try:
            if out.frames_jpeg is not None:
                cw.append_encoded(out.frames_jpeg)
            else:
                cw.append(out.frames)
            return cw.finish(out)
        except BaseException:
            cw.abort()
            raise

    def begin_clip(
        self,
        clip: ClipRecord,
        *,
        frame_shape: tuple[int, int, int],
        encoding: str = "raw",
        jpeg_quality: int = 95,
        buffered: bool = False,
        expected_bytes: int = 0,
        digest: str = "",
    ) -> ClipWriter:
        """Start streaming one clip into the current shard (rolled over first if it is full).

        Args:
            clip: the clip's record (its ``key`` is the group path).
            frame_shape: ``(S, S, 3)`` of every frame that will be appended.
            encoding: ``raw`` or ``jpeg`` (frames appended as arrays are encoded with :func:`encode_jpeg`).
            jpeg_quality: JPEG quality (``jpeg`` only).
            buffered: hold the appended raw frames (in memory up to ``memory_bytes``, then in a
                scratch file inside ``OUT/scratch``) until :meth:`ClipWriter.store` copies the kept
                ones: when the frames to keep are only known at the end (``storage.frame_step`` /
                ``max_frames`` with estimated keyframes), or the raw crops of a JPEG clip must be
                read back (:meth:`ClipWriter.read`).
            expected_bytes: frame bytes the clip will add, if known (rolls over before a clip that
                would not fit; a streamed clip of unknown size can overshoot ``max_bytes`` by itself).
            digest: the ``frames_sha256`` of the frames that will be appended, when the caller has
                computed it already (they are then not hashed twice; not with ``buffered``).

        Returns:
            the :class:`ClipWriter`; call ``finish`` or ``abort`` before the next clip.
        """
        if self._open_clip is not None:
            raise RuntimeError(f"clip {self._open_clip.key} is still open; finish or abort it first")
        if self._file is not None and (
            self._n >= self.max_clips or (self._n and self._bytes + expected_bytes > self.max_bytes)
        ):
            self.close()
        if self._file is None:
            with writing(f"a shard in {self.dir}"):
                self._open()
        assert self._file is not None
        cw = ClipWriter(
            self, clip, tuple(frame_shape), encoding, jpeg_quality, buffered, digest, self.memory_bytes
        )
        self._open_clip = cw
        return cw

    def _clip_done(self, cw: ClipWriter, stored: bool) -> None:
        """Called by the clip writer when it finishes (``stored``) or aborts."""
        self._open_clip = None
        if stored:
            self._n += 1
            self._bytes += cw.nbytes

    def _open(self) -> None:
        self._tmp = self.dir / (self.current_name + ".tmp")
        # each shard has exactly one writer (this process) and no reader before its rename, so HDF5's
        # own file locking (which fails on some network filesystems) is not needed
        self._file = h5py.File(self._tmp, "w", locking=False)
        attrs = self._file.attrs
        attrs["schema"] = SCHEMA_NAME
        if "flow_hash" in self.file_attrs:
            attrs["schema_version"] = FLOW_SCHEMA_VERSION
        elif self.file_attrs.get("frame_encoding") == "jpeg":
            attrs["schema_version"] = JPEG_SCHEMA_VERSION
        else:
            attrs["schema_version"] = RAW_SCHEMA_VERSION
        attrs["mepipe_version"] = __version__
        attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for k, v in self.file_attrs.items():
            attrs[k] = v
        self._file.create_group(CLIPS_GROUP)
        self._n = 0
        self._bytes = 0

    def close(self) -> None:
        """Finish the current shard: record its clip count, flush, rename to the final name (an empty
        shard, whose every clip was aborted, is deleted instead)."""
        if self._file is None:
            return
        if self._open_clip is not None:
            self._open_clip.abort()
        n = self._n
        self._file.attrs["n_clips"] = n
        self._file.close()
        self._file = None
        assert self._tmp is not None
        if n == 0:
            self._tmp.unlink(missing_ok=True)
            return
        final = self.dir / self.current_name
        publish(self._tmp, final)
        self._index += 1
        self.closed_names.append(final.name)
        if self.on_shard_closed is not None:
            self.on_shard_closed(final.name)

    def abort(self) -> None:
        """Drop the shard being written (its clips are not in the manifest as ok)."""
        if self._open_clip is not None:
            self._open_clip.abort()
        if self._file is not None:
            self._file.close()
            self._file = None
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()


def publish(tmp: Path, final: Path) -> None:
    """Rename a finished ``tmp`` file to ``final`` atomically, never replacing an existing file.

    A hard link + unlink is atomic and fails if ``final`` exists; filesystems without hard links fall
    back to a checked rename.

    Raises:
        FileExistsError: ``final`` already exists (the temporary file is left in place).
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise FileExistsError(f"{final} already exists; refusing to replace it with {tmp.name}") from None
    except OSError:
        if final.exists():
            raise FileExistsError(f"{final} already exists; refusing to replace it") from None
        os.replace(tmp, final)
        return
    tmp.unlink()
