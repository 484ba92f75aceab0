"""HDF5 shards and manifests: writing, reading and verifying (format: docs/shard-format.md)."""

from mepipe.shards.manifest import read_manifest, write_manifest
from mepipe.shards.reader import StoredClip, iter_clip_keys, open_shard, read_clip
from mepipe.shards.verify import VerifyReport, verify_build
from mepipe.shards.writer import ClipOutput, ShardWriter

__all__ = [
    "ClipOutput", "ShardWriter", "StoredClip", "VerifyReport", "iter_clip_keys", "open_shard",
    "read_clip", "read_manifest", "verify_build", "write_manifest",
]
