"""``mepipe verify``: re-read every shard against the manifest and the recorded checksums.

What the checksum covers: raw clips, the bytes of the ``frames`` array (C order); JPEG clips, the
stored JPEG bytes of every frame in order (what is on disk; decoded pixels depend on the JPEG
decoder's version, so they are not checksummed), and every JPEG is also decoded once to check it
yields an ``(S, S, 3)`` frame. A pair table (``OUT/pairs.csv``), when present, is checked too: every
pair names an ``ok`` clip, its shard, and indices with ``0 <= t_idx < t2_idx < n_frames``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mepipe.errors import ShardError
from mepipe.shards.manifest import read_manifest
from mepipe.shards.reader import (
    decode_jpeg,
    frame_count,
    frame_encoding,
    frame_shape,
    iter_clip_keys,
    open_shard,
)
from mepipe.shards.writer import CLIPS_GROUP, jpeg_digest


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


def group_digest(g) -> str:
    """The ``frames_sha256`` of a clip group, recomputed: raw array bytes, or the JPEG bytes in order
    (each JPEG is also decoded; a frame that does not decode raises :class:`ShardError`)."""
    if frame_encoding(g) == "raw":
        return frames_digest(g["frames"])
    shape = frame_shape(g)
    blobs = []
    ds = g["frames_jpeg"]
    for i in range(ds.shape[0]):
        blob = ds[i]
        decode_jpeg(blob, shape, f"{g.file.filename}:{g.name} frame {i}")
        blobs.append(blob.tobytes())
    return jpeg_digest(blobs)


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
                try:
                    n = frame_count(g)
                    digest = group_digest(g)
                except ShardError as exc:
                    rep.problems.append(f"{path}: {r.key}: {exc}")
                    continue
                if n != r.n_frames:
                    rep.problems.append(f"{path}: {r.key} has {n} frames, manifest says {r.n_frames}")
                if digest != r.frames_sha256 or digest != g.attrs.get("frames_sha256"):
                    rep.problems.append(
                        f"{path}: {r.key} frames checksum mismatch (data changed or corrupted)"
                    )
                for k in ("onset_idx", "apex_idx", "offset_idx"):
                    if int(g.attrs[k]) != getattr(r, k):
                        rep.problems.append(
                            f"{path}: {r.key} {k} is {int(g.attrs[k])}, manifest says {getattr(r, k)}"
                        )
                if progress:
                    progress(1)
    _check_pairs(out, rows, rep)
    return rep


def _check_pairs(out: Path, rows, rep: VerifyReport) -> None:
    """Check ``OUT/pairs.csv`` (if any) against the manifest's ``ok`` rows."""
    import csv

    path = out / "pairs.csv"
    if not path.is_file():
        return
    ok = {r.key: r for r in rows if r.status == "ok"}
    bad = 0
    with open(path, newline="") as f:
        for line, p in enumerate(csv.DictReader(f), start=2):
            r = ok.get(p.get("key", ""))
            try:
                t, t2 = int(p["t_idx"]), int(p["t2_idx"])
            except (KeyError, ValueError):
                t, t2 = -1, -1
            if r is None or p.get("shard") != r.shard or not 0 <= t < t2 < r.n_frames:
                bad += 1
                if bad <= 5:
                    rep.problems.append(
                        f"{path} line {line}: pair {p.get('key')} {p.get('t_idx')}->{p.get('t2_idx')} "
                        "does not match the manifest (unknown clip, wrong shard or index out of "
                        "range); rewrite it with `mepipe pairs`"
                    )
    if bad > 5:
        rep.problems.append(f"{path}: {bad - 5} more bad pair rows")
