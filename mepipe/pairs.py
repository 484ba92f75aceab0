"""δ-offset frame pairs ``(t, t + δ)`` drawn from built clips, as a table that points into the shards.

Pixels are stored once per clip (in the shards); a pair is only ``(key, shard, t_idx, t2_idx)`` plus
its offset in source frames and in milliseconds. The table is written to ``OUT/pairs.csv`` (format:
``docs/shard-format.md``) by the build (``pairs.write: true``) or by ``mepipe pairs OUT``, and the
trainer can draw fresh pairs every epoch with :func:`sample_pairs` from the same shards.

Sampling one clip (all indices are 0-based positions in the clip's stored frames):

1. δ is drawn uniformly in ``[a, b]`` (``unit="frames"``: integer source frames, so a 200 fps clip
   and a 30 fps clip get the same *frame* offsets; ``unit="ms"``: continuous milliseconds, so they get
   the same *time* offsets);
2. ``t`` is drawn uniformly over the frames that can take that δ (those at least δ before the
   clip's last frame), or, with probability ``expressive_bias``, over those of them inside
   ``onset_idx .. offset_idx`` (the expressive segment);
3. ``t2`` is the stored frame whose source number (or timestamp) is nearest to ``t``'s plus δ; the
   draw is rejected unless that frame is within half a frame of the target and its offset lies in
   ``[a, b]``, so δ stays uniform and no pair leaves the clip (``t < t2 < T``);
4. duplicates are dropped; when the clip has fewer distinct valid pairs than ``per_clip`` all of
   them are taken, and when rejection cannot reach ``per_clip`` (e.g. frames were subsampled so some
   offsets do not exist) the remainder is drawn uniformly from the valid pairs not yet chosen.

The random stream of a clip is seeded by ``(seed, epoch, crc32(key))``: the same arguments give the
same pairs whatever the clip order, and a new ``epoch`` gives fresh pairs.

Example: a 30 fps clip of 12 stored frames with ``delta=(1, 4)``, ``unit="frames"``: ``t`` ranges over
0..10, δ over 1..4 (δ=4 only for t<=7) and ``t2 = t + δ``; with ``unit="ms"`` and ``delta=(30, 140)``
the same clip gives δ of 1..4 frames (33..133 ms), and a 200 fps clip 6..28 frames.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pandas as pd

from mepipe.config import PairsConfig
from mepipe.errors import ShardError
from mepipe.records import ManifestRow
from mepipe.schema import parse_range
from mepipe.shards.format import CLIPS_GROUP
from mepipe.shards.manifest import read_manifest, require_complete, shard_path
from mepipe.shards.reader import open_shard, timestamps_ms

PAIRS_NAME = "pairs.csv"
PAIRS_INFO_NAME = "pairs.json"
PAIR_COLUMNS = ("key", "shard", "t_idx", "t2_idx", "delta_frames", "delta_ms")
Unit = Literal["frames", "ms"]


@dataclass(frozen=True)
class ClipTimeline:
    """What pair sampling needs to know about one stored clip (no pixels).

    Attributes:
        key, shard: the clip group path and the shard file name (as in the manifest).
        frame_numbers: ``(T,) int64`` source frame number of each stored frame (ascending).
        timestamps_ms: ``(T,) float64`` time of each stored frame in ms (ascending).
        onset_idx, apex_idx, offset_idx: keyframes as indices into the stored frames (``-1``: none).
    """

    key: str
    shard: str
    frame_numbers: np.ndarray
    timestamps_ms: np.ndarray
    onset_idx: int = -1
    apex_idx: int = -1
    offset_idx: int = -1

    @property
    def n_frames(self) -> int:
        return len(self.frame_numbers)


def load_timelines(out_dir: str | Path, rows: Sequence[ManifestRow] | None = None) -> list[ClipTimeline]:
    """Timelines of every ``ok`` clip of a build (reads only ``frame_numbers``/``timestamps_ms``).

    Args:
        out_dir: the build folder (holding ``manifest.csv`` and ``shards/``).
        rows: manifest rows to use (default: read ``out_dir/manifest.csv``).
    """
    out = Path(out_dir)
    rows = list(rows) if rows is not None else read_manifest(out)
    by_shard: dict[str, list[ManifestRow]] = {}
    for r in rows:
        if r.status == "ok":
            by_shard.setdefault(r.shard, []).append(r)
    found: dict[str, ClipTimeline] = {}
    for shard, shard_rows in sorted(by_shard.items()):
        with open_shard(shard_path(out, shard)) as f:
            for r in shard_rows:
                found[r.key] = read_timeline(f, r.key, shard, r.onset_idx, r.apex_idx, r.offset_idx)
    return [found[r.key] for r in rows if r.key in found]


def read_timeline(
    f: h5py.File, key: str, shard: str, onset_idx: int = -1, apex_idx: int = -1, offset_idx: int = -1
) -> ClipTimeline:
    """The :class:`ClipTimeline` of clip ``key`` in the open shard ``f`` (named ``shard`` in messages).

    Raises:
        ShardError: the clip is not in the shard.
    """
    g = f[CLIPS_GROUP].get(key)
    if g is None:
        raise ShardError(f"clip {key} listed in the manifest is missing from {shard}; run `mepipe verify`")
    return ClipTimeline(
        key, shard, g["frame_numbers"][()].astype(np.int64), timestamps_ms(g), onset_idx, apex_idx, offset_idx
    )


def clip_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The random stream of clip ``key`` in ``epoch``: independent of the clip order and of other clips."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, zlib.crc32(key.encode())])


def _positions(clip: ClipTimeline, unit: Unit) -> np.ndarray:
    if unit not in ("frames", "ms"):
        raise ValueError(f"unit must be 'frames' or 'ms', got {unit!r}")
    return np.asarray(clip.frame_numbers if unit == "frames" else clip.timestamps_ms, dtype=np.float64)


def _valid_ranges(pos: np.ndarray, a: float, b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each stored frame ``i``: the index range ``lo[i]..hi[i]`` of partners ``j > i`` whose offset
    lies in ``[a, b]``, and ``counts[i]`` (0 where none)."""
    n = len(pos)
    eps = 1e-6 * max(1.0, b)
    lo = np.searchsorted(pos, pos + a - eps, side="left")
    hi = np.searchsorted(pos, pos + b + eps, side="right") - 1
    lo = np.maximum(lo, np.arange(n) + 1)
    return lo, hi, np.clip(hi - lo + 1, 0, None)


def count_clip_pairs(
    clip: ClipTimeline, *, delta: tuple[float, float] = (1, 4), unit: Unit = "frames", per_clip: int = 16
) -> int:
    """How many pairs :func:`sample_clip_pairs` returns for ``clip`` (it does not depend on the draw):
    ``min(per_clip, number of distinct valid pairs)``."""
    a, b = float(delta[0]), float(delta[1])
    pos = _positions(clip, unit)
    if len(pos) < 2 or not 0 < a <= b:
        return 0
    return min(per_clip, int(_valid_ranges(pos, a, b)[2].sum()))


def sample_clip_pairs(
    clip: ClipTimeline,
    rng: np.random.Generator,
    *,
    delta: tuple[float, float] = (1, 4),
    unit: Unit = "frames",
    per_clip: int = 16,
    expressive_bias: float = 0.0,
) -> np.ndarray:
    """Pairs of one clip as an ``(K, 2) int64`` array of ``(t_idx, t2_idx)``, sorted, ``0 <= t < t2 < T``.

    See the module docstring for the procedure. ``K <= per_clip``; ``K = 0`` when no two stored frames
    are ``[a, b]`` apart.
    """
    a, b = float(delta[0]), float(delta[1])
    if not 0 < a <= b:
        raise ValueError(f"delta must satisfy 0 < a <= b, got {delta}")
    pos = _positions(clip, unit)
    n = len(pos)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    eps = 1e-6 * max(1.0, b)
    lo, hi, counts = _valid_ranges(pos, a, b)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((0, 2), np.int64)
    k = min(per_clip, total)
    cand = np.nonzero(counts > 0)[0]
    seg_lo, seg_hi = 0, n - 1
    if expressive_bias > 0 and 0 <= clip.onset_idx <= clip.offset_idx < n:
        seg_lo, seg_hi = clip.onset_idx, clip.offset_idx
    biased = expressive_bias > 0 and (seg_lo, seg_hi) != (0, n - 1)
    if unit == "frames":
        tol = 0.5
        ia, ib = math.ceil(a - eps), math.floor(b + eps)
        integer = ia <= ib
    else:
        steps = np.diff(pos)
        tol = 0.5 * float(np.median(steps)) if len(steps) else 0.5
        integer = False
    chosen: dict[int, None] = {}
    for _ in range(8):
        need = k - len(chosen)
        if need <= 0:
            break
        m = max(4 * need, 16)
        d = rng.integers(ia, ib + 1, size=m).astype(np.float64) if integer else rng.uniform(a, b, size=m)
        # t is uniform over the frames that can take this delta (so delta stays uniform near the clip end)
        t_max = np.searchsorted(pos, pos[-1] - d + tol + eps, side="right") - 1
        lo_t = np.zeros(m, np.int64)
        if biased:
            inside = rng.random(m) < expressive_bias
            lo_t = np.where(inside, seg_lo, 0)
            t_max = np.where(inside, np.minimum(t_max, seg_hi), t_max)
        valid = t_max >= lo_t
        t = lo_t + np.floor(rng.random(m) * np.maximum(t_max - lo_t + 1, 1)).astype(np.int64)
        t = np.clip(t, 0, n - 1)
        target = pos[t] + d
        j = np.clip(np.searchsorted(pos, target), 1, n - 1)
        j = np.where(np.abs(pos[j - 1] - target) <= np.abs(pos[j] - target), j - 1, j)
        off = pos[j] - pos[t]
        ok = valid & (j > t) & (np.abs(pos[j] - target) <= tol + eps) & (off >= a - eps) & (off <= b + eps)
        for code in (t[ok] * n + j[ok]).tolist():
            if len(chosen) >= k:
                break
            chosen.setdefault(int(code), None)
    if len(chosen) < k:
        rest = [
            int(i) * n + int(j)
            for i in cand
            for j in range(lo[i], hi[i] + 1)
            if int(i) * n + int(j) not in chosen
        ]
        take = rng.choice(len(rest), size=k - len(chosen), replace=False)
        for q in sorted(take.tolist()):
            chosen.setdefault(rest[q], None)
    codes = np.sort(np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    return np.column_stack([codes // n, codes % n])


def sample_pairs(
    clips: Sequence[ClipTimeline],
    *,
    delta: tuple[float, float] = (1, 4),
    unit: Unit = "frames",
    per_clip: int = 16,
    expressive_bias: float = 0.0,
    seed: int = 0,
    epoch: int = 0,
) -> pd.DataFrame:
    """Draw pairs for every clip (pure: reads nothing; call it each epoch with a new ``epoch``).

    Args:
        clips: timelines from :func:`load_timelines` (or built by the caller).
        delta: ``(a, b)``, inclusive, in ``unit``.
        unit: ``frames`` (source frame numbers) or ``ms`` (timestamps).
        per_clip: at most this many pairs per clip.
        expressive_bias: probability of drawing ``t`` inside ``onset_idx..offset_idx``.
        seed, epoch: the random stream (see the module docstring).

    Returns:
        A DataFrame with columns ``key, shard, t_idx, t2_idx, delta_frames, delta_ms`` (one row per
        pair; clips in the given order, pairs sorted by ``t_idx, t2_idx`` within a clip).
    """
    keys: list[str] = []
    shards: list[str] = []
    ts: list[np.ndarray] = []
    t2s: list[np.ndarray] = []
    dfs: list[np.ndarray] = []
    dms: list[np.ndarray] = []
    for c in clips:
        p = sample_clip_pairs(
            c,
            clip_rng(seed, epoch, c.key),
            delta=delta,
            unit=unit,
            per_clip=per_clip,
            expressive_bias=expressive_bias,
        )
        if not len(p):
            continue
        keys += [c.key] * len(p)
        shards += [c.shard] * len(p)
        ts.append(p[:, 0])
        t2s.append(p[:, 1])
        dfs.append(c.frame_numbers[p[:, 1]] - c.frame_numbers[p[:, 0]])
        dms.append(c.timestamps_ms[p[:, 1]] - c.timestamps_ms[p[:, 0]])

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return pd.DataFrame(
        {
            "key": pd.Series(keys, dtype=object),
            "shard": pd.Series(shards, dtype=object),
            "t_idx": cat(ts, np.int64),
            "t2_idx": cat(t2s, np.int64),
            "delta_frames": cat(dfs, np.int64),
            "delta_ms": np.round(cat(dms, np.float64), 3),
        },
        columns=list(PAIR_COLUMNS),
    )


def write_pair_table(out_dir: str | Path, cfg: PairsConfig, *, seed: int) -> Path:
    """(Re)write ``OUT/pairs.csv`` and ``OUT/pairs.json`` (the parameters and counts) for a build.

    Both files are written to temporary names and renamed, so a reader never sees a half table.

    Raises:
        ShardError: the build is unfinished (clips pending; see
            :func:`mepipe.shards.manifest.require_complete`).
    """
    out = Path(out_dir)
    rows = require_complete(out)
    clips = load_timelines(out, rows)
    table = sample_pairs(
        clips,
        delta=cfg.delta,
        unit=cfg.unit,
        per_clip=cfg.per_clip,
        expressive_bias=cfg.expressive_bias,
        seed=seed,
        epoch=0,
    )
    path = out / PAIRS_NAME
    tmp = path.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    with_pairs = int(table["key"].nunique()) if len(table) else 0
    info = {
        "delta": list(cfg.delta),
        "unit": cfg.unit,
        "per_clip": cfg.per_clip,
        "expressive_bias": cfg.expressive_bias,
        "seed": seed,
        "epoch": 0,
        "clips": len(clips),
        "clips_with_pairs": with_pairs,
        "pairs": len(table),
        "delta_frames_mean": float(table["delta_frames"].mean()) if len(table) else None,
        "delta_ms_mean": float(table["delta_ms"].mean()) if len(table) else None,
    }
    info_tmp = out / (PAIRS_INFO_NAME + ".tmp")
    info_tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(info_tmp, out / PAIRS_INFO_NAME)
    return path


def read_pair_table(out_dir: str | Path) -> pd.DataFrame:
    """Read ``OUT/pairs.csv`` with typed columns."""
    path = Path(out_dir) / PAIRS_NAME
    if not path.is_file():
        raise ShardError(f"{path} not found; write it with `mepipe pairs {Path(out_dir)}`")
    return pd.read_csv(
        path,
        dtype={
            "key": str,
            "shard": str,
            "t_idx": np.int64,
            "t2_idx": np.int64,
            "delta_frames": np.int64,
            "delta_ms": np.float64,
        },
    )


def pair_settings(
    out_dir: str | Path,
    *,
    delta: str | tuple[float, float] | None = None,
    unit: str | None = None,
    per_clip: int | None = None,
    bias: float | None = None,
    seed: int | None = None,
) -> tuple[PairsConfig, int]:
    """The pair settings for a build: its ``pipeline.resolved.yaml`` ``pairs`` section (defaults when
    absent), overridden by the given values. ``delta`` may be ``"A:B"``. Returns ``(config, seed)``."""
    import yaml

    from mepipe.errors import ConfigError

    out = Path(out_dir)
    resolved = out / "pipeline.resolved.yaml"
    base: dict = {}
    pipeline_seed = 0
    if resolved.is_file():
        doc = yaml.safe_load(resolved.read_text()) or {}
        base = dict(doc.get("pairs") or {})
        pipeline_seed = int(doc.get("seed", 0))
    elif not (out / "manifest.csv").is_file():
        raise ShardError(
            f"{out} is not a build folder (no manifest.csv); pass the --out folder of build-dataset"
        )
    if isinstance(delta, str):
        try:
            delta = parse_range(delta)
        except ValueError:
            raise ConfigError(f"--delta {delta!r}: expected A:B with numbers, e.g. 1:4 or 30:140") from None
    for k, v in (
        ("delta", delta),
        ("unit", unit),
        ("per_clip", per_clip),
        ("expressive_bias", bias),
        ("seed", seed),
    ):
        if v is not None:
            base[k] = list(v) if k == "delta" else v
    try:
        cfg = PairsConfig.model_validate(base)
    except Exception as exc:  # pydantic ValidationError: report it as a config problem
        raise ConfigError(f"pair settings: {exc}") from None
    return cfg, cfg.seed if cfg.seed is not None else pipeline_seed
