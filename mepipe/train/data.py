"""Datasets and samplers for frame pairs read from shards.

Design: the *sampler* decides which frames form a pair (it runs in the main process, is seeded by
``(seed, epoch)`` and shards its output across DDP ranks); the *dataset* only reads the frames it is
told to. A sample index is a tuple ``(clip, i0, i1)``: clip position in the clip list and two 0-based
frame indices with ``0 <= i0 < i1 < T`` (``i0`` plays ``I_t`` / onset, ``i1`` plays ``I_{t+δ}`` / apex).

Pre-training pairs (``delta`` mode) come from the build's sampler, :func:`mepipe.pairs.sample_clip_pairs`
(δ in source frames or ms, the semantics of ``OUT/pairs.csv``), redrawn every epoch. Example (``δ ~
U{1..4}`` frames, a 30 fps clip of T = 10 stored frames): ``δ = 3`` gives ``t ~ U{0..6}``, so the pair
``(t, t + 3)`` ends at index 9 at the latest and never leaves the clip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mepipe.pairs import ClipTimeline, Unit, clip_rng, count_clip_pairs, read_timeline, sample_clip_pairs
from mepipe.shards.reader import open_shard
from mepipe.train.frames import ClipInfo, ShardHandles, read_frame

PairIndex = tuple[int, int, int]


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """A numpy generator fixed by ``(seed, epoch, stream)``: same pairs on every rank and on resume."""
    return np.random.default_rng([int(seed), int(epoch), int(stream)])


def clip_timelines(clips: Sequence[ClipInfo]) -> list[ClipTimeline]:
    """The stored frames' source frame numbers and timestamps of each clip, read from its shard (one
    open per shard; the same :class:`~mepipe.pairs.ClipTimeline` the build's pair table is drawn from).
    ``offset_idx`` is not known to a :class:`ClipInfo` and is left at ``-1``."""
    by_shard: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_shard.setdefault(c.shard, []).append(i)
    out: list[ClipTimeline | None] = [None] * len(clips)
    for shard, idx in by_shard.items():
        with open_shard(shard) as f:
            for i in idx:
                c = clips[i]
                out[i] = read_timeline(f, c.key, shard, c.onset_idx, c.apex_idx)
    return [t for t in out if t is not None]


def delta_pairs(
    timelines: Sequence[ClipTimeline],
    delta: tuple[float, float],
    pairs_per_clip: int,
    *,
    unit: Unit = "frames",
    seed: int = 0,
    epoch: int = 0,
) -> list[PairIndex]:
    """Draw pre-training pairs ``(clip, t, t2)`` for one epoch with the build's sampler.

    Each clip's pairs are :func:`mepipe.pairs.sample_clip_pairs` of its timeline with the stream
    :func:`mepipe.pairs.clip_rng` ``(seed, epoch, key)``, so epoch ``e`` gives exactly the pairs of
    ``mepipe pairs`` / :func:`mepipe.pairs.sample_pairs` with the same seed and ``epoch=e``: δ in source
    frames (``unit="frames"``) or milliseconds (``unit="ms"``), uniform in ``[a, b]``, ``0 <= t < t2 <
    T``, no duplicate pair within a clip, ``min(pairs_per_clip, distinct valid pairs)`` per clip
    (clips too short for ``a`` give none).

    Args:
        timelines: one per clip (see :func:`clip_timelines`); sample indices refer to positions in it.
        delta: inclusive range ``(a, b)`` in ``unit``, ``0 < a <= b``.
        pairs_per_clip: at most this many pairs per clip.
        unit: ``frames`` or ``ms``.
        seed, epoch: the random stream.

    Returns:
        The pairs in clip order, sorted by ``(t, t2)`` within a clip.
    """
    out: list[PairIndex] = []
    for ci, tl in enumerate(timelines):
        p = sample_clip_pairs(
            tl, clip_rng(seed, epoch, tl.key), delta=delta, unit=unit, per_clip=pairs_per_clip
        )
        out.extend((ci, int(t), int(t2)) for t, t2 in p.tolist())
    return out


def keyframe_pairs(
    clips: Sequence[ClipInfo], jitter: int, rng: np.random.Generator | None
) -> list[PairIndex]:
    """Onset/apex pairs ``(clip, onset_idx, apex_idx)``, one per clip, optionally jittered.

    With ``jitter = j`` each index moves by ``U{-j..j}``, clamped into the clip and kept ordered
    (``onset < apex``). Clips without an annotated onset use frame 0; without an apex, the middle frame.
    """
    out: list[PairIndex] = []
    for ci, c in enumerate(clips):
        last = c.n_frames - 1
        on = c.onset_idx if c.onset_idx >= 0 else 0
        ap = c.apex_idx if c.apex_idx >= 0 else (last + 1) // 2
        if jitter and rng is not None:
            on = on + int(rng.integers(-jitter, jitter + 1))
            ap = ap + int(rng.integers(-jitter, jitter + 1))
        on = min(max(on, 0), last)
        ap = min(max(ap, 0), last)
        if (
            ap <= on and last > 0
        ):  # keep onset strictly before apex (a 1-frame clip pairs frame 0 with itself)
            on, ap = (on, on + 1) if on < last else (last - 1, last)
        out.append((ci, on, ap))
    return out


def table_pairs(clips: Sequence[ClipInfo], rows: Iterable[tuple[str, int, int]]) -> list[PairIndex]:
    """Map pair-table rows ``(key, t_idx, t2_idx)`` (``OUT/pairs.csv``) to ``(clip, i0, i1)`` indices.

    Rows of clips not in ``clips`` (failed, filtered out) are skipped; a pair outside its clip raises.
    """
    index = {c.key: i for i, c in enumerate(clips)}
    out: list[PairIndex] = []
    for key, t, t2 in rows:
        ci = index.get(key)
        if ci is None:
            continue
        if not 0 <= int(t) < int(t2) < clips[ci].n_frames:
            raise ValueError(
                f"pair table: ({key}, {t}, {t2}) is outside the clip's {clips[ci].n_frames} frames; "
                "rewrite it with `mepipe pairs`"
            )
        out.append((ci, int(t), int(t2)))
    return out


class PairSampler(Sampler[PairIndex]):
    """Yields the pair indices of one epoch; call :meth:`set_epoch` before each epoch.

    Args:
        clips: the clip list of the dataset.
        mode: ``delta`` (pre-training pairs drawn per epoch), ``keyframes`` (onset/apex) or ``table``
            (the fixed pairs given as ``table``, reshuffled every epoch).
        delta, pairs_per_clip: for ``delta`` mode (see :func:`delta_pairs`).
        unit: ``delta``'s unit, ``frames`` (source frames) or ``ms``.
        timelines: for ``delta`` mode, one per clip (default: read from the shards on first use with
            :func:`clip_timelines`).
        jitter: for ``keyframes`` mode (0: the annotated indices).
        shuffle: shuffle the epoch's pairs (same permutation on every rank).
        seed: base seed; the epoch's pairs depend only on ``(seed, epoch)``.
        rank, world_size: DDP sharding; every rank gets ``ceil(N / world_size)`` indices (padded by
            wrapping around) so that all ranks take the same number of steps.
        table: the pairs of ``table`` mode (see :func:`table_pairs`).
    """

    def __init__(
        self,
        clips: Sequence[ClipInfo],
        *,
        mode: str = "delta",
        delta: tuple[float, float] = (1, 4),
        pairs_per_clip: int = 16,
        unit: Unit = "frames",
        timelines: Sequence[ClipTimeline] | None = None,
        jitter: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        table: Sequence[PairIndex] = (),
    ) -> None:
        if mode not in ("delta", "keyframes", "table"):
            raise ValueError(f"mode must be 'delta', 'keyframes' or 'table', got {mode!r}")
        if unit not in ("frames", "ms"):
            raise ValueError(f"unit must be 'frames' or 'ms', got {unit!r}")
        self.table = list(table)
        self.clips = list(clips)
        self.unit = unit
        self._timelines = list(timelines) if timelines is not None else None
        if self._timelines is not None and [t.key for t in self._timelines] != [c.key for c in self.clips]:
            raise ValueError("timelines must be given in the order of clips (one per clip, same keys)")
        self.mode, self.delta, self.pairs_per_clip, self.jitter = mode, delta, pairs_per_clip, jitter
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def timelines(self) -> list[ClipTimeline]:
        """The clips' timelines (read from the shards once, in the sampling process)."""
        if self._timelines is None:
            self._timelines = clip_timelines(self.clips)
        return self._timelines

    def pairs(self) -> list[PairIndex]:
        """All pairs of the current epoch (before rank sharding)."""
        if self.mode == "delta":
            pairs = delta_pairs(
                self.timelines,
                self.delta,
                self.pairs_per_clip,
                unit=self.unit,
                seed=self.seed,
                epoch=self.epoch,
            )
        elif self.mode == "table":
            pairs = list(self.table)
        else:
            rng = epoch_rng(self.seed, self.epoch)
            pairs = keyframe_pairs(self.clips, self.jitter, rng if self.jitter else None)
        if self.shuffle:
            order = epoch_rng(self.seed, self.epoch, 1).permutation(len(pairs))
            pairs = [pairs[i] for i in order]
        return pairs

    def _mine(self) -> list[PairIndex]:
        pairs = self.pairs()
        if self.world_size == 1 or not pairs:
            return pairs
        per_rank = -(-len(pairs) // self.world_size)
        padded = (pairs * (per_rank * self.world_size // len(pairs) + 1))[: per_rank * self.world_size]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[PairIndex]:
        return iter(self._mine())

    def __len__(self) -> int:
        if self.mode == "delta":
            n = sum(
                count_clip_pairs(t, delta=self.delta, unit=self.unit, per_clip=self.pairs_per_clip)
                for t in self.timelines
            )
        elif self.mode == "table":
            n = len(self.table)
        else:
            n = len(self.clips)
        return -(-n // self.world_size) if n else 0


class PairDataset(Dataset):
    """Frame pairs read from shards.

    Two ways to index it:

    * ``ds[i]`` with an integer ``0 <= i < len(ds)``: pair ``i`` of :attr:`pairs` (default: each clip's
      annotated onset/apex pair, so ``len(ds)`` is the number of clips and ``ds[i]`` is clip ``i``'s
      pair). Negative ``i`` counts from the end; ``i >= len(ds)`` raises ``IndexError`` (so ``for s in
      ds`` stops).
    * ``ds[(clip, i0, i1)]``: any pair, as drawn by a :class:`PairSampler` (what training uses).

    Shards are opened lazily in the reading process (never in ``__init__``). Batches are read by
    :meth:`__getitems__` straight into one preallocated buffer.

    A batch (see :func:`collate_pairs`) is a dict:

    * ``frames``: ``(B, 2, S, S, 3) uint8`` RGB, ``[:, 0]`` = ``I_t`` / onset, ``[:, 1]`` = ``I_{t+δ}`` / apex;
    * ``index``: ``(B, 3) int64`` the ``(clip, i0, i1)`` tuples;
    * ``label``: ``(B,) int64`` class index (``-1`` when unlabelled).

    Args:
        clips: the clips (all with the same crop size S).
        size: S, the stored crop side.
        pairs: the pairs integer indices refer to (default: :func:`keyframe_pairs` without jitter).
    """

    def __init__(
        self, clips: Sequence[ClipInfo], size: int, pairs: Sequence[PairIndex] | None = None
    ) -> None:
        self.clips = list(clips)
        self.size = size
        self.pairs: list[PairIndex] = (
            list(pairs) if pairs is not None else keyframe_pairs(self.clips, 0, None)
        )
        self.handles = ShardHandles()

    def __len__(self) -> int:
        return len(self.pairs)

    def _resolve(self, index: int | PairIndex) -> PairIndex:
        if isinstance(index, (tuple, list)):
            if len(index) != 3:
                raise IndexError(f"a pair index is (clip, i0, i1), got {index!r}")
            return (int(index[0]), int(index[1]), int(index[2]))
        i = int(index)
        n = len(self.pairs)
        if not -n <= i < n:
            raise IndexError(f"pair {i} out of range for a dataset of {n} pairs")
        return self.pairs[i]

    def read_into(self, index: PairIndex, out: np.ndarray) -> None:
        """Read pair ``index`` into ``out`` of shape ``(2, S, S, 3) uint8``."""
        ci, i0, i1 = index
        if not 0 <= ci < len(self.clips):
            raise IndexError(f"pair {index}: clip {ci} out of range for {len(self.clips)} clips")
        clip = self.clips[ci]
        if not 0 <= i0 < clip.n_frames or not 0 <= i1 < clip.n_frames:
            raise IndexError(f"pair {index} outside clip {clip.key} with {clip.n_frames} frames")
        frames = self.handles.clip(clip)
        read_frame(frames, i0, out[0])
        read_frame(frames, i1, out[1])

    def __getitems__(self, indices: Sequence[int | PairIndex]) -> dict[str, torch.Tensor]:
        pairs = [self._resolve(i) for i in indices]
        n, s = len(pairs), self.size
        buf = np.empty((n, 2, s, s, 3), dtype=np.uint8)
        for j, idx in enumerate(pairs):
            self.read_into(idx, buf[j])
        index = torch.tensor([list(i) for i in pairs], dtype=torch.int64).reshape(n, 3)
        labels = torch.tensor([self.clips[i[0]].label for i in pairs], dtype=torch.int64)
        return {"frames": torch.from_numpy(buf), "index": index, "label": labels}

    def __getitem__(self, index: int | PairIndex) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([index])
        return {k: v[0] for k, v in batch.items()}


def collate_pairs(batch: Any) -> dict[str, torch.Tensor]:
    """Collate for :class:`PairDataset`: pass a ``__getitems__`` batch through, stack single samples."""
    if isinstance(batch, dict):
        return batch
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


def make_loader(
    dataset: PairDataset,
    sampler: PairSampler,
    *,
    batch_size: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` driven by ``sampler`` (batches read with ``__getitems__``).

    The loader gets its own ``torch.Generator`` so creating an iterator never consumes the global
    torch RNG (which keeps resumed runs bit-identical).
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_pairs,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(sampler.seed),
    )
