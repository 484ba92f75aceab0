"""Optical-flow inputs for the models that read flow instead of frame pairs (``ststnet``).

The trainer's data path is the pair path of :mod:`mepipe.train.data` (sampler -> dataset -> batch ->
:func:`prepare_batch` -> model). A flow model changes only the dataset: :class:`FlowDataset` takes
the same pair indices ``(clip, i0, i1)`` (so sampling, onset/apex jitter, DDP sharding, folds, reports
and ``--protocol all`` are the same for every model) and returns, for each pair, the model input its
:class:`~mepipe.flow.FlowInput` describes (STSTNet: ``(3, 28, 28)`` u, v, strain, min-max per sample).

Where a sample comes from, per pair:

1. the in-memory cache (every input is computed once per process: LOSO folds share them);
2. the clip's stored flow ``/clips/<key>/flow/onset_apex`` when the build holds one of this pair, made
   with the same backend, parameters and size, with the channels needed (``mepipe flow OUT``);
3. else computed from the stored onset/apex crops with :meth:`FlowInput.from_frames`.

:func:`training_input` picks the settings: the model's input made from the build's stored flow when
the build stores onset -> apex flow with the needed channels (so ``mepipe flow OUT --backend tvl1``
trains STSTNet on TV-L1 flow, as in the paper), else DIS on 112-px crops. Jittered pairs that the build
does not store are computed with the same settings, so stored and computed inputs agree.

Augmentation: flow images get only the horizontal flip (``augment.flip``), done right for flow: the
image is mirrored and ``u`` changes sign (``1 - u`` after min-max); ``v``, magnitude and strain do
not change. Rotation, zoom, shift and colour jitter do not apply to flow and are not used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mepipe.flow import FlowInput
from mepipe.logs import get_logger
from mepipe.train.augment import prepare_pairs
from mepipe.train.config import AugmentConfig
from mepipe.train.data import PairDataset, PairIndex
from mepipe.train.frames import ClipInfo

log = get_logger(__name__)

CACHE_BYTES = int(os.environ.get("MEPIPE_FLOW_CACHE_MB", "512")) * 1_000_000
"""Upper bound of the in-memory flow cache (oldest inputs are dropped beyond it)."""

_CACHE: dict[tuple, np.ndarray] = {}
_cache_bytes = [0]
_announced: set[tuple[str, str]] = set()


def _cache_put(key: tuple, x: np.ndarray) -> None:
    _CACHE[key] = x
    _cache_bytes[0] += x.nbytes
    while _cache_bytes[0] > CACHE_BYTES and len(_CACHE) > 1:
        _cache_bytes[0] -= _CACHE.pop(next(iter(_CACHE))).nbytes


def clear_cache() -> None:
    """Forget every cached flow input (tests; after rewriting a build in place)."""
    _CACHE.clear()
    _cache_bytes[0] = 0


def flip_affine(spec: FlowInput) -> np.ndarray:
    """``(C, 2) float32`` per-channel ``(a, b)`` such that a mirrored flow image holds ``a * x + b``:
    ``u`` becomes ``-u`` (``1 - u`` after min-max normalisation), the other channels stay."""
    out = np.tile(np.array([1.0, 0.0], np.float32), (len(spec.channels), 1))
    if "u" in spec.channels:
        out[spec.channels.index("u")] = (-1.0, 1.0) if spec.normalisation == "minmax" else (-1.0, 0.0)
    return out


class FlowDataset(PairDataset):
    """Flow inputs of frame pairs, indexed like :class:`~mepipe.train.data.PairDataset`.

    ``ds[i]`` (pair ``i`` of :attr:`pairs`; by default clip ``i``'s onset/apex pair) or
    ``ds[(clip, i0, i1)]``; a batch (``__getitems__``) is a dict:

    * ``flow``: ``(B, C, N, N) float32`` the model inputs (channels first);
    * ``flip``: ``(C, 2) float32`` see :func:`flip_affine` (used by augmentation);
    * ``index``: ``(B, 3) int64``; ``label``: ``(B,) int64``.

    Args:
        clips, size, pairs: as for :class:`PairDataset` (``size``: the stored crop side S).
        spec: what input to make (see :class:`~mepipe.flow.FlowInput`).

    Attributes:
        sources: how many inputs this dataset read from the stored flow / computed from crops.
    """

    def __init__(
        self,
        clips: Sequence[ClipInfo],
        size: int,
        spec: FlowInput,
        pairs: Sequence[PairIndex] | None = None,
    ) -> None:
        super().__init__(clips, size, pairs)
        self.spec = spec
        self.sources = {"stored": 0, "computed": 0}
        self._spec_key = spec.key()
        self._flip = torch.from_numpy(flip_affine(spec))
        self._stamps: dict[str, tuple[int, int, int]] = {}

    def _stamp(self, shard: str) -> tuple[int, int, int]:
        if shard not in self._stamps:
            st = os.stat(shard)
            self._stamps[shard] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return self._stamps[shard]

    def flow(self, index: PairIndex) -> np.ndarray:
        """The input ``(N, N, C) float32`` of pair ``index`` (cached)."""
        from mepipe.flow_stage import stored_flow_input

        ci, i0, i1 = index
        if not 0 <= ci < len(self.clips):
            raise IndexError(f"pair {index}: clip {ci} out of range for {len(self.clips)} clips")
        clip = self.clips[ci]
        key = (clip.shard, self._stamp(clip.shard), clip.key, i0, i1, self._spec_key)
        x = _CACHE.get(key)
        if x is not None:
            return x
        if not 0 <= i0 < clip.n_frames or not 0 <= i1 < clip.n_frames:
            raise IndexError(f"pair {index} outside clip {clip.key} with {clip.n_frames} frames")
        x = stored_flow_input(self.handles.clip(clip).group, self.spec, i0, i1)
        if x is not None:
            self.sources["stored"] += 1
        else:
            pair = np.empty((2, self.size, self.size, 3), np.uint8)
            self.read_into(index, pair)
            x = self.spec.from_frames(pair[0], pair[1])
            self.sources["computed"] += 1
        x = np.ascontiguousarray(x, dtype=np.float32)
        _cache_put(key, x)
        return x

    def warm(self, pairs: Sequence[PairIndex] | None = None) -> dict[str, int]:
        """Make the inputs of ``pairs`` (default :attr:`pairs`) now, in this process (DataLoader workers
        then inherit them); returns :attr:`sources`."""
        for p in self.pairs if pairs is None else pairs:
            self.flow(p)
        return dict(self.sources)

    def frames(self, indices: Sequence[int | PairIndex]) -> dict[str, torch.Tensor]:
        """The onset/apex frames of ``indices``, as :class:`PairDataset` returns them (pictures)."""
        return PairDataset.__getitems__(self, indices)

    def __getitems__(self, indices: Sequence[int | PairIndex]) -> dict[str, torch.Tensor]:
        pairs = [self._resolve(i) for i in indices]
        n = self.spec.size
        buf = np.empty((len(pairs), len(self.spec.channels), n, n), np.float32)
        for j, p in enumerate(pairs):
            buf[j] = self.flow(p).transpose(2, 0, 1)
        index = torch.tensor([list(i) for i in pairs], dtype=torch.int64).reshape(len(pairs), 3)
        labels = torch.tensor([self.clips[i[0]].label for i in pairs], dtype=torch.int64)
        return {"flow": torch.from_numpy(buf), "flip": self._flip, "index": index, "label": labels}

    def __getitem__(self, index: int | PairIndex) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([index])
        return {k: (v if k == "flip" else v[0]) for k, v in batch.items()}


def build_of(clips: Sequence[ClipInfo]) -> Path:
    """The build folder of ``clips`` (their shards are ``BUILD/shards/*.h5``)."""
    return Path(clips[0].shard).parent.parent


def training_input(clips: Sequence[ClipInfo], model_name: str) -> FlowInput | None:
    """The flow input to train model ``model_name`` with on ``clips``' build (``None``: a pair model).

    The registered input (:data:`mepipe.train.models.FLOW_INPUTS`) made from the build's stored flow
    when it has the onset -> apex pair and the channels needed; else computed with DIS. Logged once per
    build and settings.
    """
    from mepipe.flow_stage import build_flow_input
    from mepipe.train.models import flow_input

    base = flow_input(model_name)
    if base is None:
        return None
    build = build_of(clips)
    spec, stored = build_flow_input(build, base)
    if (str(build), spec.key()) not in _announced:
        _announced.add((str(build), spec.key()))
        where = "the build's stored flow where it holds the pair" if stored else "computed from the crops"
        log.info("%s reads %s (%s)", model_name, spec.describe(), where)
    return spec


def make_dataset(clips: Sequence[ClipInfo], size: int, spec: FlowInput | None) -> PairDataset:
    """The dataset a model reads: :class:`PairDataset`, or :class:`FlowDataset` for a flow ``spec``."""
    return PairDataset(clips, size) if spec is None else FlowDataset(clips, size, spec)


def model_flow_input(model: nn.Module) -> FlowInput | None:
    """The flow input a built model reads (its ``flow_input`` attribute), ``None`` for pair models."""
    from mepipe.train.ddp import unwrap

    spec = getattr(unwrap(model), "flow_input", None)
    return spec if isinstance(spec, FlowInput) else None


def augment_flow(
    x: torch.Tensor, flip: torch.Tensor, cfg: AugmentConfig | None, gen: torch.Generator | None
) -> torch.Tensor:
    """Mirror each flow image with probability ``cfg.flip`` (drawn on the CPU from ``gen``), turning its
    channels by ``flip`` (:func:`flip_affine`); ``x``: ``(B, C, N, N)``."""
    if cfg is None or not cfg.enabled or cfg.flip <= 0:
        return x
    if gen is None:
        raise ValueError("augment_flow: augmentation needs a torch.Generator")
    mirror = (torch.rand(x.shape[0], generator=gen) < cfg.flip).to(x.device)
    a = flip[:, 0].to(x).view(1, -1, 1, 1)
    b = flip[:, 1].to(x).view(1, -1, 1, 1)
    turned = x.flip(-1) * a + b
    return torch.where(mirror.view(-1, 1, 1, 1), turned, x)


def prepare_batch(
    batch: dict[str, torch.Tensor],
    input_size: int,
    *,
    device: torch.device,
    augment: AugmentConfig | None = None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """The model input of a batch: :func:`~mepipe.train.augment.prepare_pairs` on a pair batch
    (``(B, 2, 3, N, N)``), or the flow images of a :class:`FlowDataset` batch (``(B, C, n, n)``), with
    ``augment`` when given."""
    if "flow" in batch:
        return augment_flow(batch["flow"].to(device, non_blocking=True), batch["flip"], augment, gen)
    return prepare_pairs(batch["frames"].to(device, non_blocking=True), input_size, augment=augment, gen=gen)


def prepared_inputs(
    dataset: PairDataset,
    pairs: Sequence[PairIndex],
    *,
    batch_size: int,
    input_size: int,
    device: torch.device,
) -> Iterator[torch.Tensor]:
    """Model inputs of ``pairs`` in order, without augmentation (BatchNorm recalibration, evaluation),
    for either kind of dataset."""
    for s in range(0, len(pairs), batch_size):
        yield prepare_batch(dataset.__getitems__(list(pairs[s : s + batch_size])), input_size, device=device)


def inputs_from_frames(frames: torch.Tensor, spec: FlowInput) -> torch.Tensor:
    """``(B, 2, S, S, 3) uint8`` onset/apex pairs (in memory) -> ``(B, C, n, n) float32`` flow inputs."""
    arr = frames.cpu().numpy()
    out = np.stack([spec.from_frames(p[0], p[1]).transpose(2, 0, 1) for p in arr]) if len(arr) else None
    if out is None:
        return torch.zeros((0, len(spec.channels), spec.size, spec.size))
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


__all__ = [
    "FlowDataset",
    "augment_flow",
    "build_of",
    "clear_cache",
    "flip_affine",
    "inputs_from_frames",
    "make_dataset",
    "model_flow_input",
    "prepare_batch",
    "prepared_inputs",
    "training_input",
]
