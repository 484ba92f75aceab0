"""Frame access for training: the clip table from a manifest, lazily opened shards, one frame reader.

Every pixel the trainer reads goes through :func:`read_frame`, so an on-disk frame encoding is a
change in that one function: raw frames are read whole, straight into a caller-provided buffer with
``read_direct`` (never h5py's strided or fancy selection, which are ~100x slower; see
``shared/reference/performance.md``); JPEG frames (``frames_jpeg``) are decoded by
:func:`mepipe.shards.reader.read_frame`.

HDF5 files are opened lazily, on first access, in the process that reads (each DataLoader worker
opens its own handles; handles are never pickled). Every file is checked when it is opened
(:func:`mepipe.shards.reader.assert_self_contained`): a shard with external links, external storage or
virtual datasets is refused, so a crafted shard cannot make training read files outside the build.
Only finished builds are read (:func:`mepipe.shards.manifest.require_complete`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mepipe.errors import ShardError
from mepipe.records import ManifestRow, subject_key
from mepipe.shards.manifest import require_complete
from mepipe.shards.reader import assert_self_contained

CLIPS_GROUP = "clips"  # the shards' root group of clips (docs/shard-format.md)


@dataclass(frozen=True)
class ClipInfo:
    """One ``ok`` clip usable for training.

    Attributes:
        key: clip key = HDF5 group path under ``/clips`` (``casme2/sub01/EP02_01f``).
        shard: absolute path of the shard file holding it.
        dataset, subject: as in the manifest; ``subject_key`` is ``dataset/subject``.
        n_frames: number of stored frames T.
        onset_idx, apex_idx: 0-based indices into the stored frames (``-1``: not annotated).
        label: class index under the chosen label scheme (``-1``: unlabelled / pre-training).
    """

    key: str
    shard: str
    dataset: str
    subject: str
    n_frames: int
    onset_idx: int
    apex_idx: int
    label: int = -1

    subject_key = property(subject_key)


def clips_from_rows(
    rows: Sequence[ManifestRow],
    build_dir: str | Path,
    *,
    label_fn: Callable[[ManifestRow], int | None] | None = None,
    datasets: Sequence[str] = (),
) -> tuple[list[ClipInfo], dict[str, int]]:
    """Turn manifest rows into :class:`ClipInfo` (only ``ok`` rows).

    Args:
        rows: manifest rows (see :func:`mepipe.shards.read_manifest`).
        build_dir: the build folder; shards are ``build_dir/shards/<row.shard>``.
        label_fn: maps a row to a class index or ``None`` (clip excluded by the label scheme).
            ``None``: keep every clip with label ``-1``.
        datasets: keep only these datasets (empty: all).

    Returns:
        ``(clips, dropped)``: kept clips in manifest order, and counts of dropped rows by reason
        (``failed``, ``dataset``, ``label``).
    """
    root = Path(build_dir)
    clips: list[ClipInfo] = []
    dropped = {"failed": 0, "dataset": 0, "label": 0}
    for r in rows:
        if r.status != "ok":
            dropped["failed"] += 1
            continue
        if datasets and r.dataset not in datasets:
            dropped["dataset"] += 1
            continue
        label = -1
        if label_fn is not None:
            lab = label_fn(r)
            if lab is None:
                dropped["label"] += 1
                continue
            label = int(lab)
        clips.append(
            ClipInfo(
                r.key,
                str((root / "shards" / r.shard).resolve()),
                r.dataset,
                r.subject,
                r.n_frames,
                r.onset_idx,
                r.apex_idx,
                label,
            )
        )
    return clips, dropped


def load_clips(
    build_dir: str | Path,
    *,
    label_fn: Callable[[ManifestRow], int | None] | None = None,
    datasets: Sequence[str] = (),
) -> tuple[list[ClipInfo], list[ManifestRow], dict[str, int]]:
    """Read ``build_dir/manifest.csv`` and return ``(clips, rows, dropped)`` (see :func:`clips_from_rows`).

    Raises:
        ShardError: the build is unfinished (``pending`` rows), or no clip is left.
    """
    rows = require_complete(build_dir)
    clips, dropped = clips_from_rows(rows, build_dir, label_fn=label_fn, datasets=datasets)
    if not clips:
        raise ShardError(
            f"{build_dir}: no usable clips (dropped: {dropped}); check the manifest's status "
            "column, data.datasets and the label scheme"
        )
    return clips, rows, dropped


@dataclass
class ClipFrames:
    """An open clip group and, for raw-encoded clips, its ``frames`` dataset (the fast path)."""

    group: h5py.Group
    raw: h5py.Dataset | None

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(S, S, 3)`` of one decoded frame."""
        if self.raw is not None:
            return tuple(int(v) for v in self.raw.shape[1:])  # type: ignore[return-value]
        from mepipe.shards.reader import frame_shape

        return frame_shape(self.group)


def read_frame(clip: ClipFrames, idx: int, out: np.ndarray) -> None:
    """Read frame ``idx`` of a clip into ``out``; the single place the trainer decodes frames.

    Raw clips (``frames`` ``(T, S, S, 3) uint8``, one frame per chunk) are read with one
    ``read_direct`` of a whole frame. Other encodings (JPEG ``frames_jpeg``) go through
    :func:`mepipe.shards.reader.read_frame`.

    Args:
        clip: the clip's open group (see :meth:`ShardHandles.clip`).
        idx: 0-based frame index, ``0 <= idx < T``.
        out: C-contiguous ``(S, S, 3) uint8`` destination (e.g. a view into a batch buffer).
    """
    if clip.raw is not None:
        clip.raw.read_direct(out[np.newaxis], np.s_[idx : idx + 1])
        return
    from mepipe.shards.reader import read_frame as decode_frame

    decode_frame(clip.group, idx, out)


_CHECKED: dict[str, tuple[int, int, int]] = {}
"""Shards found self-contained in this process (and, through fork, in its DataLoader workers), keyed by
path with the file's (inode, size, mtime) when it was checked."""


def check_once(f: h5py.File, path: str) -> None:
    """:func:`~mepipe.shards.reader.assert_self_contained` once per file and process (a 64-clip shard
    takes ~0.1 s to walk; evaluation and workers reopen files often). A file changed since its check
    (other inode, size or mtime) is checked again."""
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    if _CHECKED.get(path) == stamp:
        return
    assert_self_contained(f)
    _CHECKED[path] = stamp


class ShardHandles:
    """Per-process cache of open shard files and clip groups.

    Nothing is opened in ``__init__``; files open on first use in the process that reads, and the
    cache is dropped when pickled (DataLoader workers) or when the process id changes (fork).
    """

    def __init__(self) -> None:
        self._pid = -1
        self._files: dict[str, h5py.File] = {}
        self._clips: dict[tuple[str, str], ClipFrames] = {}

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def clip(self, clip: ClipInfo) -> ClipFrames:
        """The open group of ``clip``, opening its shard if needed."""
        if self._pid != os.getpid():
            self._files, self._clips, self._pid = {}, {}, os.getpid()
        k = (clip.shard, clip.key)
        cf = self._clips.get(k)
        if cf is None:
            f = self._files.get(clip.shard)
            if f is None:
                if not os.path.isfile(clip.shard):
                    raise ShardError(
                        f"shard {clip.shard} not found; is the build folder complete (run `mepipe verify`)?"
                    )
                f = h5py.File(clip.shard, "r")
                try:
                    check_once(f, clip.shard)
                except ShardError:
                    f.close()
                    raise
                self._files[clip.shard] = f
            g = f[CLIPS_GROUP].get(clip.key)
            if g is None:
                raise ShardError(
                    f"clip {clip.key!r} not in {clip.shard}; the manifest does not match the shards"
                )
            raw = g.get("frames")
            if raw is not None and (raw.dtype != np.uint8 or raw.ndim != 4):
                raise ShardError(
                    f"{clip.shard}:{g.name}/frames is {raw.dtype} {raw.shape}; expected (T, S, S, 3) uint8"
                )
            cf = self._clips[k] = ClipFrames(g, raw)
        return cf

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files, self._clips = {}, {}


def frame_size(clips: Sequence[ClipInfo], handles: ShardHandles | None = None) -> int:
    """Side S of the stored crops; raises if clips of different sizes are mixed."""
    h = handles or ShardHandles()
    sizes = {}
    for c in clips:
        shard_size = sizes.get(c.shard)
        if shard_size is None:
            sizes[c.shard] = h.clip(c).frame_shape[0]
    if len(set(sizes.values())) > 1:
        raise ShardError(
            f"shards hold different crop sizes {sorted(set(sizes.values()))}; build all data "
            "with the same align.crop_size"
        )
    if handles is None:
        h.close()
    return next(iter(sizes.values()))
