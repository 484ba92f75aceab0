"""Writing HDF5 shards: one group per clip, rolled over by clip count and by bytes.

Each shard is written as ``shard-NNNNN.h5.tmp`` and renamed to ``shard-NNNNN.h5`` only once closed,
so a crash never leaves a half-written file under a final name. The layout is documented in
``docs/shard-format.md`` and readable with plain h5py.

Frames are stored either raw (``frames``, ``(T, S, S, 3) uint8``, one frame per chunk; schema
version 1) or as one JPEG per frame (``frames_jpeg``, ``(T,)`` variable-length uint8; schema version
2, written only by builds with ``storage.encoding: jpeg``). :func:`encode_jpeg` is the one encoder;
:func:`mepipe.shards.reader.read_frames` the one decoder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from mepipe import __version__
from mepipe.records import ClipRecord

SCHEMA_NAME = "mepipe-shard"
SCHEMA_VERSION = 3
"""Newest schema this mepipe reads and writes. Raw-frame shards are still written as version 1
(readable by older mepipe); version 2 adds JPEG-encoded frames (``frames_jpeg``); version 3 adds
optical flow (``/clips/<key>/flow/<pair>``, written by the flow stage, :mod:`mepipe.flow_stage`)."""
RAW_SCHEMA_VERSION = 1
JPEG_SCHEMA_VERSION = 2  # JPEG frames without flow; the flow stage raises it to 3
CLIPS_GROUP = "clips"


def encode_jpeg(frames: np.ndarray, quality: int) -> list[bytes]:
    """``(T, S, S, 3) uint8 RGB`` -> one baseline JPEG per frame (4:2:0, OpenCV's libjpeg-turbo).

    The bytes decode to RGB with any JPEG decoder (they are written from the BGR-ordered array, as
    JPEG expects); :func:`mepipe.shards.reader.read_frames` is the decoder mepipe uses.
    """
    import cv2

    out = []
    for f in frames:
        ok, buf = cv2.imencode(
            ".jpg", np.ascontiguousarray(f[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        )
        if not ok:
            raise ValueError(f"JPEG encoding failed for a frame of shape {f.shape}")
        out.append(buf.tobytes())
    return out


def jpeg_digest(blobs) -> str:
    """sha256 over the JPEG bytes of every frame, in order (the ``frames_sha256`` of JPEG clips)."""
    h = hashlib.sha256()
    for b in blobs:
        h.update(bytes(b))
    return h.hexdigest()


@dataclass
class ClipOutput:
    """A processed clip, ready to be stored.

    Attributes:
        clip: the adapter record it came from (for videos: with ``fps`` from the container).
        frames: ``(T, S, S, 3) uint8 RGB`` aligned crops, or ``None`` when only ``frames_jpeg`` is kept.
        frame_numbers: ``(T,) int64`` source frame number of each stored frame.
        transforms: ``(2, 3)`` (one transform, ``clip`` mode) or ``(T, 2, 3)`` (``per_frame``) float64,
            source pixels -> crop pixels.
        landmarks_ref: ``(68, 2) float32`` landmarks on the reference frame, source pixels.
        reference_idx: shard-local index of the reference frame.
        face_box: ``(4,) float`` left, top, right, bottom of the face on the reference frame.
        faces_found, face_note: detector outcome on the reference frame.
        onset_idx, apex_idx, offset_idx: shard-local keyframe indices.
        keyframe_source: where the keyframes come from (``annotated``, ``estimated`` ...).
        source_files: ``(T,)`` source file of each frame (relative to ``clip.source_path``), or ``[]``.
        source_sha256: ``(T,)`` sha256 of each source frame file, or ``[]`` (video: in ``extra``).
        frames_sha256: sha256 of ``frames.tobytes()`` (raw), or :func:`jpeg_digest` of ``frames_jpeg``.
        extra_arrays: further named arrays stored in the clip group (e.g. keyframe curves).
        timestamps_ms: ``(T,) float64`` presentation time of each stored frame in ms, or ``None``
            (then ``frame_numbers / fps``).
        frames_jpeg: one JPEG per stored frame (``storage.encoding: jpeg``), else ``None``.
        frame_shape: ``(S, S, 3)`` of the decoded frames (needed with ``frames_jpeg``).
        jpeg_quality: quality the JPEGs were written with (0: raw).
        source_file_sha256: sha256 of the source video file ('' for image folders).
        notes: non-fatal findings for the manifest row's ``message`` (variable frame rate, ...).
        extra_attrs: further scalar attributes of the clip group.
    """

    clip: ClipRecord
    frames: np.ndarray
    frame_numbers: np.ndarray
    transforms: np.ndarray
    landmarks_ref: np.ndarray
    reference_idx: int
    face_box: np.ndarray
    faces_found: int
    face_note: str
    onset_idx: int
    apex_idx: int
    offset_idx: int
    keyframe_source: str
    source_files: list[str]
    source_sha256: list[str]
    frames_sha256: str
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    timestamps_ms: np.ndarray | None = None
    frames_jpeg: list[bytes] | None = None
    frame_shape: tuple[int, int, int] | None = None
    jpeg_quality: int = 0
    source_file_sha256: str = ""
    notes: str = ""
    extra_attrs: dict[str, object] = field(default_factory=dict)

    def source_number(self, idx: int) -> int:
        return int(self.frame_numbers[idx]) if idx >= 0 else -1

    @property
    def n_frames(self) -> int:
        """Number of stored frames T."""
        return len(self.frame_numbers)

    @property
    def stored_nbytes(self) -> int:
        """Bytes of frame data this clip adds to a shard (JPEG sizes, or the raw array size)."""
        if self.frames_jpeg is not None:
            return sum(len(b) for b in self.frames_jpeg)
        assert self.frames is not None
        return int(self.frames.nbytes)


class ShardWriter:
    """Appends clips to ``out_dir/shards/shard-NNNNN.h5``, starting a new shard when the current one
    holds ``max_clips`` clips or ``max_bytes`` bytes of frames.

    Args:
        out_dir: build output folder.
        file_attrs: attributes written on every shard's root (config hash, backends, model hashes ...).
        on_shard_closed: called with the final shard path after each rename (the build rewrites the
            manifest then, so completed shards are always listed).
    """

    def __init__(
        self,
        out_dir: Path,
        file_attrs: dict[str, str | int],
        *,
        max_clips: int,
        max_bytes: int,
        on_shard_closed=None,
    ) -> None:
        self.dir = out_dir / "shards"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file_attrs = file_attrs
        self.max_clips, self.max_bytes = max_clips, max_bytes
        self.on_shard_closed = on_shard_closed
        self._index = len(list(self.dir.glob("shard-*.h5")))
        self._file: h5py.File | None = None
        self._tmp: Path | None = None
        self._n = 0
        self._bytes = 0

    @property
    def current_name(self) -> str:
        return f"shard-{self._index:05d}.h5"

    def add(self, out: ClipOutput) -> str:
        """Store one clip; returns the (final) shard file name holding it."""
        size = out.stored_nbytes
        if self._file is not None and (self._n >= self.max_clips or self._bytes + size > self.max_bytes):
            self.close()
        if self._file is None:
            self._open()
        assert self._file is not None
        write_clip(self._file, out)
        self._n += 1
        self._bytes += size
        return self.current_name

    def _open(self) -> None:
        self._tmp = self.dir / (self.current_name + ".tmp")
        self._file = h5py.File(self._tmp, "w")
        attrs = self._file.attrs
        attrs["schema"] = SCHEMA_NAME
        attrs["schema_version"] = (
            JPEG_SCHEMA_VERSION if self.file_attrs.get("frame_encoding") == "jpeg" else RAW_SCHEMA_VERSION
        )
        attrs["mepipe_version"] = __version__
        attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for k, v in self.file_attrs.items():
            attrs[k] = v
        self._file.create_group(CLIPS_GROUP)
        self._n = 0
        self._bytes = 0

    def close(self) -> None:
        """Finish the current shard: record its clip count, flush, rename to the final name."""
        if self._file is None:
            return
        self._file.attrs["n_clips"] = self._n
        self._file.close()
        final = self.dir / self.current_name
        assert self._tmp is not None
        os.replace(self._tmp, final)
        self._file = None
        self._index += 1
        if self.on_shard_closed is not None:
            self.on_shard_closed(final.name)

    def abort(self) -> None:
        """Drop the shard being written (its clips are not in the manifest as ok)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()


def write_clip(f: h5py.File, out: ClipOutput) -> None:
    """Write one clip group ``/clips/<dataset>/<clip_id>`` (see docs/shard-format.md)."""
    c = out.clip
    g = f[CLIPS_GROUP].create_group(c.key)
    if out.frames_jpeg is not None:
        shape = out.frame_shape or (out.frames.shape[1:] if out.frames is not None else None)
        if shape is None:
            raise ValueError(f"clip {c.key}: frames_jpeg needs frame_shape")
        ds = g.create_dataset("frames_jpeg", shape=(len(out.frames_jpeg),), dtype=h5py.vlen_dtype(np.uint8))
        for i, blob in enumerate(out.frames_jpeg):
            ds[i] = np.frombuffer(blob, dtype=np.uint8)
        g.attrs["frame_encoding"] = "jpeg"
        g.attrs["frame_shape"] = np.asarray(shape, dtype=np.int64)
        g.attrs["jpeg_quality"] = int(out.jpeg_quality)
    else:
        assert out.frames is not None
        t, h, w, ch = out.frames.shape
        g.create_dataset("frames", data=out.frames, chunks=(1, h, w, ch))
        g.attrs["frame_encoding"] = "raw"
    g.create_dataset("frame_numbers", data=np.asarray(out.frame_numbers, dtype=np.int64))
    if out.timestamps_ms is not None:
        g.create_dataset("timestamps_ms", data=np.asarray(out.timestamps_ms, dtype=np.float64))
    g.create_dataset("transform", data=np.asarray(out.transforms, dtype=np.float64))
    g.create_dataset("landmarks_ref", data=np.asarray(out.landmarks_ref, dtype=np.float32))
    str_t = h5py.string_dtype()
    g.create_dataset("source_files", data=np.asarray(out.source_files, dtype=object), dtype=str_t)
    g.create_dataset("source_sha256", data=np.asarray(out.source_sha256, dtype=object), dtype=str_t)
    for name, arr in out.extra_arrays.items():
        g.create_dataset(name, data=arr)
    a = g.attrs
    a["dataset"], a["subject"], a["clip_id"] = c.dataset, c.subject, c.clip_id
    a["onset"], a["apex"], a["offset"] = (
        out.source_number(i) for i in (out.onset_idx, out.apex_idx, out.offset_idx)
    )
    a["onset_idx"], a["apex_idx"], a["offset_idx"] = out.onset_idx, out.apex_idx, out.offset_idx
    a["keyframe_source"] = out.keyframe_source
    a["emotion_raw"], a["aus_raw"] = c.emotion_raw, c.aus_raw
    a["fps"], a["expression_type"] = float(c.fps), c.expression_type
    a["reference_idx"], a["reference_frame"] = out.reference_idx, out.source_number(out.reference_idx)
    a["face_box"] = np.asarray(out.face_box, dtype=np.float64)
    a["faces_found"], a["face_note"] = out.faces_found, out.face_note
    a["frames_sha256"] = out.frames_sha256
    a["source_path"] = c.source_path
    a["fixes"] = ";".join(c.fixes)
    a["extra"] = json.dumps(c.extra, sort_keys=True)
    if out.source_file_sha256:
        a["source_file_sha256"] = out.source_file_sha256
    for k, v in out.extra_attrs.items():
        a[k] = v
