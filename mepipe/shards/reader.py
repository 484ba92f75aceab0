"""Reading shards back. Plain h5py works too (see docs/shard-format.md); this adds conveniences."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mepipe.errors import ShardError
from mepipe.shards.writer import CLIPS_GROUP, SCHEMA_NAME, SCHEMA_VERSION


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


def open_shard(path: str | Path) -> h5py.File:
    """Open a shard read-only after checking its schema name and version."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"shard {path} not found; run `mepipe verify` on the build folder")
    f = h5py.File(path, "r")
    if f.attrs.get("schema") != SCHEMA_NAME:
        f.close()
        raise ShardError(f"{path} is not a mepipe shard (schema attr {f.attrs.get('schema')!r})")
    if int(f.attrs.get("schema_version", -1)) > SCHEMA_VERSION:
        f.close()
        raise ShardError(f"{path} has schema version {f.attrs['schema_version']}; upgrade mepipe to read it")
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
        return StoredClip(key, g["frames"][()], g["frame_numbers"][()], g["transform"][()],
                          g["landmarks_ref"][()], clip_attrs(g))
    finally:
        if not isinstance(shard, h5py.File):
            f.close()


def iter_clip_keys(f: h5py.File) -> list[str]:
    """All clip keys in an open shard (``dataset/subject/clip`` paths of groups holding ``frames``)."""
    keys: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Group) and "frames" in obj:
            keys.append(name)

    f[CLIPS_GROUP].visititems(visit)
    return sorted(keys)
