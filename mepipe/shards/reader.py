"""Reading shards back. Plain h5py works too (see docs/shard-format.md); this adds conveniences.

:func:`read_frames` / :func:`read_frame` are the one place that knows how frames are encoded on disk
(raw ``frames`` or JPEG ``frames_jpeg``); the reader, ``verify``, ``inspect`` and the trainer all call them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mepipe.errors import ShardError
from mepipe.shards.format import CLIPS_GROUP, SCHEMA_NAME, SCHEMA_VERSION


@dataclass
class StoredClip:
    """A clip read from a shard: ``frames`` ``(T, S, S, 3) uint8`` and its metadata (attrs)."""

    key: str
    frames: np.ndarray
    frame_numbers: np.ndarray
    transform: np.ndarray
    landmarks_ref: np.ndarray
    attrs: dict

    @property
    def onset(self) -> np.ndarray:
        return self.frames[self.attrs["onset_idx"]]

    @property
    def apex(self) -> np.ndarray:
        return self.frames[self.attrs["apex_idx"]]


def assert_self_contained(f: h5py.File) -> None:
    """Refuse a file whose data could come from outside it: external links, datasets with external
    storage (raw data in other files) or virtual datasets (mapped from other files).

    mepipe never writes such objects; a shard holding one was crafted or damaged, and reading it
    could make mepipe read files outside the build folder. Links are inspected without being
    followed.

    Raises:
        ShardError: naming the file, the object and what to do.
    """
    bad: list[str] = []

    def visit(name: str, link: object) -> None:
        if isinstance(link, h5py.ExternalLink):
            bad.append(f"/{name} is an external link to {link.filename}:{link.path}")
            return
        if not isinstance(link, h5py.HardLink):
            return
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset):
            if obj.external:
                bad.append(f"/{name} stores its data in external file(s) {[e[0] for e in obj.external]}")
            elif obj.is_virtual:
                bad.append(f"/{name} is a virtual dataset mapped from other files")

    f.visititems_links(visit)
    if bad:
        raise ShardError(
            f"{f.filename}: refusing a shard that refers to data outside itself ({'; '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''}); mepipe never writes such files: rebuild it"
        )


def open_shard(path: str | Path) -> h5py.File:
    """Open a shard read-only after checking its schema name and version and that it is
    self-contained (:func:`assert_self_contained`)."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"shard {path} not found; run `mepipe verify` on the build folder")
    f = h5py.File(path, "r")
    try:
        if f.attrs.get("schema") != SCHEMA_NAME:
            raise ShardError(f"{path} is not a mepipe shard (schema attr {f.attrs.get('schema')!r})")
        if int(f.attrs.get("schema_version", -1)) > SCHEMA_VERSION:
            raise ShardError(
                f"{path} has schema version {f.attrs['schema_version']}; upgrade mepipe to read it"
            )
        assert_self_contained(f)
    except BaseException:
        f.close()
        raise
    return f


def clip_attrs(group: h5py.Group) -> dict:
    """The clip group's attributes as plain Python values (``extra`` decoded from JSON)."""
    out = {}
    for k, v in group.attrs.items():
        if isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        out[k] = v
    out["extra"] = json.loads(out.get("extra") or "{}")
    return out


def read_clip(shard: str | Path | h5py.File, key: str) -> StoredClip:
    """Read clip ``key`` (``"casme2/sub01/EP02_01f"``) from a shard path or an open file."""
    f = open_shard(shard) if not isinstance(shard, h5py.File) else shard
    try:
        g = f[CLIPS_GROUP].get(key)
        if g is None:
            raise ShardError(f"clip {key!r} is not in {f.filename}; check the manifest's shard column")
        return StoredClip(
            key,
            read_frames(g),
            g["frame_numbers"][()],
            g["transform"][()],
            g["landmarks_ref"][()],
            clip_attrs(g),
        )
    finally:
        if not isinstance(shard, h5py.File):
            f.close()


def iter_clip_keys(f: h5py.File) -> list[str]:
    """All clip keys in an open shard (``dataset/subject/clip`` paths of groups holding ``frames``)."""
    keys: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Group) and ("frames" in obj or "frames_jpeg" in obj):
            keys.append(name)

    f[CLIPS_GROUP].visititems(visit)
    return sorted(keys)


def frame_encoding(group: h5py.Group) -> str:
    """``raw`` or ``jpeg``: how the clip group stores its frames."""
    if "frames" in group:
        return "raw"
    if "frames_jpeg" in group:
        return "jpeg"
    raise ShardError(
        f"{group.file.filename}:{group.name} holds neither 'frames' nor 'frames_jpeg'; "
        "is this a clip group of a mepipe shard?"
    )


def frame_count(group: h5py.Group) -> int:
    """Number of stored frames T of a clip group."""
    return int(group["frames" if frame_encoding(group) == "raw" else "frames_jpeg"].shape[0])


def frame_shape(group: h5py.Group) -> tuple[int, int, int]:
    """``(S, S, 3)``: shape of one decoded frame of a clip group."""
    if frame_encoding(group) == "raw":
        return tuple(int(v) for v in group["frames"].shape[1:])  # type: ignore[return-value]
    return tuple(int(v) for v in group.attrs["frame_shape"])  # type: ignore[return-value]


def decode_jpeg(blob: np.ndarray, shape: tuple[int, ...], where: str = "") -> np.ndarray:
    """One stored JPEG (``(n,) uint8``) -> ``(S, S, 3) uint8 RGB``; raises :class:`ShardError`."""
    import cv2  # lazily: reading raw shards (and training) must work without OpenCV

    img = cv2.imdecode(np.asarray(blob, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.shape != tuple(shape):
        raise ShardError(
            f"{where}: stored JPEG frame does not decode to {tuple(shape)}; the shard is damaged, "
            "run `mepipe verify`"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_frames(
    group: h5py.Group, start: int = 0, stop: int | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Frames ``start .. stop-1`` of a clip group as ``(n, S, S, 3) uint8 RGB``, whatever the encoding.

    Raw frames are read as one contiguous, chunk-aligned block (never a strided or fancy selection);
    JPEG frames are decoded one by one.

    Args:
        group: the clip group ``/clips/<key>`` of an open shard.
        start, stop: 0-based frame indices, ``stop`` exclusive (``None``: to the end).
        out: optional C-contiguous ``(n, S, S, 3) uint8`` destination (e.g. a slice of a batch buffer).

    Returns:
        ``out`` (or a new array) holding the frames.
    """
    n = frame_count(group)
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise IndexError(f"{group.name}: frames {start}..{stop} requested, the clip has {n}")
    shape = frame_shape(group)
    if out is None:
        out = np.empty((stop - start, *shape), dtype=np.uint8)
    elif out.shape != (stop - start, *shape) or out.dtype != np.uint8:
        raise ValueError(f"out has shape {out.shape} {out.dtype}, expected {(stop - start, *shape)} uint8")
    if stop == start:
        return out
    if frame_encoding(group) == "raw":
        group["frames"].read_direct(out, np.s_[start:stop])
        return out
    blobs = group["frames_jpeg"][start:stop]
    where = f"{group.file.filename}:{group.name}"
    for k, blob in enumerate(blobs):
        out[k] = decode_jpeg(blob, shape, f"{where} frame {start + k}")
    return out


def read_frame(group: h5py.Group, idx: int, out: np.ndarray | None = None) -> np.ndarray:
    """Frame ``idx`` (0-based) of a clip group as ``(S, S, 3) uint8 RGB``; ``out``: optional destination."""
    if out is not None:
        read_frames(group, idx, idx + 1, out[np.newaxis])
        return out
    return read_frames(group, idx, idx + 1)[0]


def timestamps_ms(group: h5py.Group) -> np.ndarray:
    """``(T,) float64`` time of each stored frame in ms: the stored ``timestamps_ms`` (videos), else
    ``frame_numbers / fps * 1000``."""
    if "timestamps_ms" in group:
        return group["timestamps_ms"][()].astype(np.float64)
    fps = float(group.attrs.get("fps", 0.0)) or 1.0
    return group["frame_numbers"][()].astype(np.float64) * (1000.0 / fps)
