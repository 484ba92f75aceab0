"""``mepipe verify``: re-read every shard against the manifest and the recorded checksums."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mepipe.errors import ShardError
from mepipe.shards.manifest import read_manifest
from mepipe.shards.reader import iter_clip_keys, open_shard
from mepipe.shards.writer import CLIPS_GROUP


@dataclass
class VerifyReport:
    clips_checked: int = 0
    shards_checked: int = 0
    failed_rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def frames_digest(ds) -> str:
    """sha256 of a stored ``(T, H, W, 3)`` frames dataset, read frame by frame (chunk-aligned)."""
    h = hashlib.sha256()
    for i in range(ds.shape[0]):
        h.update(ds[i].tobytes())
    return h.hexdigest()


def verify_build(out_dir: str | Path, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check a build folder: every ``ok`` manifest row's clip exists in its shard with the recorded
    frame count and checksum; every shard is complete (no ``.tmp``) and holds no unlisted clip."""
    out = Path(out_dir)
    rows = read_manifest(out)
    rep = VerifyReport()
    for tmp in sorted((out / "shards").glob("*.tmp")):
        rep.problems.append(f"{tmp}: incomplete shard left by an interrupted build; delete it or rebuild")
    by_shard: dict[str, list] = defaultdict(list)
    for r in rows:
        if r.status == "ok":
            by_shard[r.shard].append(r)
        else:
            rep.failed_rows += 1
    on_disk = {p.name for p in (out / "shards").glob("shard-*.h5")}
    for name in sorted(on_disk - set(by_shard)):
        rep.problems.append(f"{out / 'shards' / name}: shard not referenced by the manifest")
    for shard, shard_rows in sorted(by_shard.items()):
        path = out / "shards" / shard
        try:
            f = open_shard(path)
        except (ShardError, OSError) as exc:
            rep.problems.append(f"{path}: {exc}")
            continue
        with f:
            rep.shards_checked += 1
            listed = {r.key for r in shard_rows}
            for extra in sorted(set(iter_clip_keys(f)) - listed):
                rep.problems.append(f"{path}: clip {extra} is stored but not listed as ok in the manifest")
            for r in shard_rows:
                rep.clips_checked += 1
                g = f[CLIPS_GROUP].get(r.key)
                if g is None:
                    rep.problems.append(f"{path}: clip {r.key} listed in the manifest is missing")
                    continue
                ds = g["frames"]
                if ds.shape[0] != r.n_frames:
                    rep.problems.append(f"{path}: {r.key} has {ds.shape[0]} frames, manifest says {r.n_frames}")
                digest = frames_digest(ds)
                if digest != r.frames_sha256 or digest != g.attrs.get("frames_sha256"):
                    rep.problems.append(f"{path}: {r.key} frames checksum mismatch (data changed or corrupted)")
                for k in ("onset_idx", "apex_idx", "offset_idx"):
                    if int(g.attrs[k]) != getattr(r, k):
                        rep.problems.append(f"{path}: {r.key} {k} is {int(g.attrs[k])}, manifest says {getattr(r, k)}")
                if progress:
                    progress(1)
    return rep
