"""Raw crops of one clip held until the clip is stored: in memory up to a budget, beyond it in a scratch
file inside ``OUT/scratch/``.

A :class:`~mepipe.shards.clipwriter.ClipWriter` holds a clip's crops here when they cannot go straight
into the shard: the frames to keep are only known at the end (``storage.frame_step`` /
``max_frames`` with estimated keyframes), or the clip is stored as JPEG and the per-clip processing
must read its exact raw crops back (keyframe estimation, the face stage's stability measurement).
Short clips (the whole of DFEW, CASME II, SAMM clips at 224 px) stay in memory, so a build on a
network filesystem does not write their raw frames a second time; a long clip (SAMM or CAS(ME)^3
long videos, tens of thousands of frames) moves to the scratch file as soon as it outgrows the
budget, so a worker's memory does not grow with the clip.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

SCRATCH_DIR = "scratch"
"""Folder inside OUT holding the scratch files of held clips while they are written."""

MEMORY_BYTES = 64 << 20
"""Bytes of raw crops a held clip keeps in memory before it moves to its scratch file (64 MiB: 445
crops of 224 x 224 x 3)."""


class ScratchFrames:
    """Raw ``(S, S, 3) uint8`` frames of one clip, appended in order and read back by index.

    Args:
        path: the scratch file to use once the frames outgrow ``memory_bytes`` (created then, in a
            folder that is created too; deleted by :meth:`close`).
        shape: ``(S, S, 3)`` of every frame.
        memory_bytes: frames kept in memory at most (0: every frame goes to the file).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], memory_bytes: int = MEMORY_BYTES) -> None:
        self.path = Path(path)
        self.shape = tuple(int(v) for v in shape)
        self.memory_bytes = int(memory_bytes)
        self._frame_bytes = int(np.prod(self.shape))
        self._mem: list[np.ndarray] = []
        self._file: h5py.File | None = None
        self._ds: h5py.Dataset | None = None

    def __len__(self) -> int:
        return len(self._mem) if self._ds is None else int(self._ds.shape[0])

    @property
    def spilled(self) -> bool:
        """True once the frames are in the scratch file."""
        return self._ds is not None

    def append(self, frames: np.ndarray) -> None:
        """Append ``(n, S, S, 3) uint8`` frames (copied: the caller may reuse its array)."""
        if self._ds is None and (len(self._mem) + len(frames)) * self._frame_bytes > self.memory_bytes:
            self._spill()
        if self._ds is None:
            self._mem.extend(np.array(f) for f in frames)
            return
        start = self._ds.shape[0]
        self._ds.resize((start + len(frames), *self.shape))
        self._ds[start : start + len(frames)] = frames

    def _spill(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one writer and one reader, this process: HDF5's file locking (unreliable on NFS) is not needed
        self._file = h5py.File(self.path, "w", locking=False)
        n = len(self._mem)
        self._ds = self._file.create_dataset(
            "frames",
            shape=(n, *self.shape),
            maxshape=(None, *self.shape),
            chunks=(1, *self.shape),
            dtype=np.uint8,
        )
        for k, f in enumerate(self._mem):
            self._ds[k] = f
        self._mem = []

    def read(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``i`` (0-based, in append order) as ``(S, S, 3) uint8``: a new array, or ``out``."""
        n = len(self)
        if not 0 <= i < n:
            raise IndexError(f"frame {i} was not appended (0..{n - 1} were)")
        if out is None:
            out = np.empty(self.shape, np.uint8)
        if self._ds is None:
            out[...] = self._mem[i]
        else:
            self._ds.read_direct(out[np.newaxis], np.s_[i : i + 1])
        return out

    def close(self) -> None:
        """Forget the frames and delete the scratch file (if one was made)."""
        self._mem = []
        self._ds = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
