"""Clip-level torch ``Dataset`` over a build's shards, for sequence models and custom training code.

``ClipDataset`` is integer-indexed (``ds[i]`` is clip ``i``, ``len(ds)`` the number of clips) and
returns the clip's frames, all of them or ``num_frames`` spread evenly over the clip, with its label and
keyframe indices. A ``transform=`` hook receives each sample dict and returns the sample to use (crop,
normalise, stack optical flow ...). Frames are read through the trainer's one frame reader
(:func:`mepipe.train.frames.read_frame`), shards are opened lazily in the reading process and checked to be
self-contained, and unfinished builds are refused.

Example (16 frames per clip, CASME II 5 classes)::

    ds = ClipDataset.from_build("shards/casme2", labels="casme2_5", num_frames=16)
    s = ds[0]            # s["frames"]: (16, S, S, 3) uint8, s["label"]: class index, s["key"]: clip key
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)   # frames: (8, 16, S, S, 3)

With ``num_frames=None`` clips keep their own length T, so batches need ``batch_size=1`` or a collate
function that pads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mepipe.train.frames import ClipInfo, ShardHandles, frame_size, load_clips, read_frame

Sample = dict[str, Any]


def spread_indices(n_frames: int, num_frames: int | None) -> np.ndarray:
    """Frame indices read from a clip of ``n_frames`` frames: all of them (``num_frames=None``), or
    ``num_frames`` evenly spread from the first to the last frame (repeating frames of shorter clips).

    Example: ``spread_indices(10, 4)`` -> ``[0, 3, 6, 9]``; ``spread_indices(3, 5)`` -> ``[0, 0, 1, 2, 2]``.

    Returns:
        ``(num_frames,)`` (or ``(n_frames,)``) ``int64``, non-decreasing, within ``[0, n_frames)``.
    """
    if num_frames is None:
        return np.arange(n_frames, dtype=np.int64)
    return np.rint(np.linspace(0, n_frames - 1, num_frames)).astype(np.int64)


class ClipDataset(Dataset):
    """Whole clips from shards, integer-indexed.

    ``ds[i]`` is a dict:

    * ``frames``: ``(T', S, S, 3) uint8`` RGB tensor, ``T' = num_frames`` or the clip's T;
    * ``frame_idx``: ``(T',) int64`` the 0-based stored-frame index of each returned frame;
    * ``label``: ``int64`` scalar tensor, class index (``-1`` without a label scheme);
    * ``onset_idx``, ``apex_idx``: ``int64`` scalar tensors, stored-frame indices (``-1``: not annotated);
    * ``key``: the clip key (``casme2/sub01/EP02_01f``); ``index``: ``i``.

    Args:
        clips: the clips (see :func:`mepipe.train.frames.load_clips`), all of one crop size.
        num_frames: frames per sample, evenly spread over the clip (``None``: every stored frame).
        transform: ``sample -> sample``, applied last (e.g. convert to float and normalise).
    """

    def __init__(
        self,
        clips: Sequence[ClipInfo],
        *,
        num_frames: int | None = None,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be >= 1 or None, got {num_frames}")
        self.clips = list(clips)
        self.num_frames = num_frames
        self.transform = transform
        self.handles = ShardHandles()
        self.size = frame_size(self.clips) if self.clips else 0

    @classmethod
    def from_build(
        cls,
        build_dir: str | Path,
        *,
        labels: str | None = None,
        datasets: Sequence[str] = (),
        num_frames: int | None = None,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> ClipDataset:
        """The ``ok`` clips of a finished build; with ``labels`` (a scheme name) only the clips it labels.

        Raises:
            ShardError: unfinished build, or no clip left.
            ConfigError: unknown label scheme (the message lists the available ones).
        """
        label_fn = None
        if labels is not None:
            from mepipe.labels import load_scheme

            scheme = load_scheme(labels)
            label_fn = lambda r: scheme.label(r.dataset, r.emotion_raw)  # noqa: E731
        clips, _, _ = load_clips(build_dir, label_fn=label_fn, datasets=datasets)
        return cls(clips, num_frames=num_frames, transform=transform)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Sample:
        n = len(self.clips)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"clip {i} out of range for a dataset of {n} clips")
        i %= n
        clip = self.clips[i]
        idx = spread_indices(clip.n_frames, self.num_frames)
        frames = np.empty((len(idx), self.size, self.size, 3), dtype=np.uint8)
        group = self.handles.clip(clip)
        for j, t in enumerate(idx):
            if j and t == idx[j - 1]:
                frames[j] = frames[j - 1]
            else:
                read_frame(group, int(t), frames[j])
        sample: Sample = {
            "frames": torch.from_numpy(frames),
            "frame_idx": torch.from_numpy(idx),
            "label": torch.tensor(clip.label, dtype=torch.int64),
            "onset_idx": torch.tensor(clip.onset_idx, dtype=torch.int64),
            "apex_idx": torch.tensor(clip.apex_idx, dtype=torch.int64),
            "key": clip.key,
            "index": i,
        }
        return self.transform(sample) if self.transform is not None else sample
