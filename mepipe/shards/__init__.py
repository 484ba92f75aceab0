"""HDF5 shards and manifests: writing, reading and verifying (format: docs/shard-format.md)."""

from mepipe.shards.format import ClipOutput
from mepipe.shards.manifest import read_manifest, read_manifest_frame, write_manifest
from mepipe.shards.reader import (
    StoredClip,
    frame_count,
    frame_shape,
    iter_clip_keys,
    open_shard,
    read_clip,
    read_frame,
    read_frames,
    timestamps_ms,
)
from mepipe.shards.verify import VerifyReport, verify_build
from mepipe.shards.writer import ShardWriter

__all__ = [
    "ClipOutput",
    "ShardWriter",
    "StoredClip",
    "VerifyReport",
    "frame_count",
    "frame_shape",
    "iter_clip_keys",
    "open_shard",
    "read_clip",
    "read_frame",
    "read_frames",
    "read_manifest",
    "read_manifest_frame",
    "timestamps_ms",
    "verify_build",
    "write_manifest",
]
