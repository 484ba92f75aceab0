"""``mepipe verify``: re-read every shard against the manifest and the recorded checksums.

An unfinished build (clips ``pending``: interrupted or killed) is reported as such, not as damage:
its leftovers (``*.tmp`` shards, a complete shard finished after the last manifest rewrite) are
notes, since the next run cleans them up or adopts them; the stored clips are checked as usual. In a
finished build the same leftovers are problems. Shards are opened with
:func:`~mepipe.shards.reader.open_shard`, which refuses external links, external storage and virtual
datasets, and shard names from the manifest must be plain file names, so a crafted build cannot make
``verify`` read files outside ``OUT``.

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
from mepipe.shards.format import CLIPS_GROUP, jpeg_digest
from mepipe.shards.manifest import MANIFEST_NAME, read_manifest, read_state, shard_path
from mepipe.shards.reader import (
    decode_jpeg,
    frame_count,
    frame_encoding,
    frame_shape,
    iter_clip_keys,
    open_shard,
)


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_build`: ``problems`` (damage, mismatches) make it not ``ok``;
    ``pending`` clips and ``notes`` (leftovers of an interrupted run) mark it ``complete`` or not."""

    clips_checked: int = 0
    shards_checked: int = 0
    failed_rows: int = 0
    pending: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def complete(self) -> bool:
        return self.pending == 0


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
    frame count and checksum; every shard is complete (no ``.tmp``), self-contained, written with the
    build's config and holds no unlisted clip; pending clips are counted (see the module docstring)."""
    out = Path(out_dir)
    try:
        rows = read_manifest(out)
    except ShardError as exc:
        if not (out / MANIFEST_NAME).is_file():
            raise
        rep = VerifyReport()
        rep.problems.append(str(exc))
        return rep
    rep = VerifyReport()
    by_shard: dict[str, list] = defaultdict(list)
    for r in rows:
        if r.status == "ok":
            by_shard[r.shard].append(r)
        elif r.status == "pending":
            rep.pending += 1
        else:
            rep.failed_rows += 1
    leftovers = rep.notes if rep.pending else rep.problems
    for tmp in sorted((out / "shards").glob("*.tmp")):
        leftovers.append(f"{tmp}: unfinished shard of an interrupted run (the next run deletes it)")
    on_disk = {p.name for p in (out / "shards").glob("shard-*.h5")}
    for name in sorted(on_disk - set(by_shard)):
        leftovers.append(
            f"{out / 'shards' / name}: shard not referenced by the manifest"
            + (
                " (finished after the last manifest write; the next run adopts or deletes it)"
                if rep.pending
                else ""
            )
        )
    expected_hash = str(read_state(out).get("config_hash", ""))
    for shard, shard_rows in sorted(by_shard.items()):
        path = shard_path(out, shard)
        try:
            f = open_shard(path)
        except (ShardError, OSError) as exc:
            rep.problems.append(f"{path}: {exc}")
            continue
        with f:
            rep.shards_checked += 1
            if expected_hash and str(f.attrs.get("config_hash", "")) != expected_hash:
                rep.problems.append(
                    f"{path}: written with pipeline config {str(f.attrs.get('config_hash', ''))[:12]}, the "
                    f"build's is {expected_hash[:12]} (a shard from another build)"
                )
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
