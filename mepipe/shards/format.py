"""What a stored clip is: the shard schema constants, :class:`ClipOutput` (one processed clip, ready
to store), the one JPEG encoder and frame digest, and :func:`write_metadata` (everything of a clip
group but its frames). The layout is documented in ``docs/shard-format.md``.

Frames are stored either raw (``frames``, ``(T, S, S, 3) uint8``, one frame per chunk; schema
version 1) or as one JPEG per frame (``frames_jpeg``, ``(T,)`` variable-length uint8; schema version
2, written only by builds with ``storage.encoding: jpeg``). :func:`encode_jpeg` is the one encoder;
:func:`mepipe.shards.reader.read_frames` the one decoder. Writing is in :mod:`mepipe.shards.writer`
(shards) and :mod:`mepipe.shards.clipwriter` (one clip, streamed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import h5py
import numpy as np

from mepipe.records import ClipRecord

SCHEMA_NAME = "mepipe-shard"
SCHEMA_VERSION = 3
"""Newest schema this mepipe reads and writes. Raw-frame shards are still written as version 1
(readable by older mepipe); version 2 adds JPEG-encoded frames (``frames_jpeg``); version 3 adds
optical flow (``/clips/<key>/flow/<pair>``, written by the flow stage, :mod:`mepipe.flow_stage`)."""
RAW_SCHEMA_VERSION = 1
JPEG_SCHEMA_VERSION = 2  # JPEG frames without flow; the flow stage raises it to 3
FLOW_SCHEMA_VERSION = 3  # shards holding optical flow (``mepipe flow``, or a build with flow.enabled)
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


def write_metadata(g: h5py.Group, out: ClipOutput, frames_sha256: str) -> None:
    """Everything of a clip group but its frames: per-frame arrays and attributes."""
    c = out.clip
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
    a["frames_sha256"] = frames_sha256
    a["source_path"] = c.source_path
    a["fixes"] = ";".join(c.fixes)
    a["extra"] = json.dumps(c.extra, sort_keys=True)
    if out.source_file_sha256:
        a["source_file_sha256"] = out.source_file_sha256
    for k, v in out.extra_attrs.items():
        a[k] = v
