"""Is the clip's face still in a crop? The cheap check the drivers run at intervals, and the span logic.

:class:`PresenceCheck` judges one aligned crop against the reference crop:

1. **appearance** (cheap, ~0.05 ms): normalised cross-correlation of 32 x 32 blurred grey thumbnails of
   the template face region of the two crops. Head jitter, expression, illumination gain and noise keep
   it high; an empty background, another scene or a face that moved away drop it. At or above
   ``face.presence_similarity`` the face is present.
2. **referee** (only when 1 fails, ~1.5 ms): dlib HOG on the crop near the template face box (as in
   :mod:`mepipe.face.detect`); a score ``>= face.plausible_score`` means a face is still there (e.g. a
   large expression or a lighting change lowered the correlation).

:func:`scan_back` and :class:`ForwardSpan` turn checks into the contiguous span of frames that show the
face: checks every ``face.check_every`` frames from the reference outwards; a failed check counts only
when the next ``face.lost_frames - 1`` frames fail too (a single bad frame is a glitch, noted), and then
the exact boundary is located frame by frame between the last passed check and the failed one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from mepipe.config import FaceConfig
from mepipe.face.detect import referee_on_crop, to_gray
from mepipe.face.fit import template_box

THUMB = 32


def thumbnail(crop: np.ndarray, margin: float) -> np.ndarray:
    """``(S, S[, 3]) uint8`` aligned crop -> ``(32, 32) float32`` zero-mean unit-norm thumbnail of the
    template face box (blurred by ~1 px at 32 px so sub-pixel jitter does not count)."""
    g = to_gray(crop)
    s = g.shape[0]
    b = template_box(s, margin)
    x0, y0 = max(0, int(b.left)), max(0, int(b.top))
    x1, y1 = min(s, int(np.ceil(b.right))), min(s, int(np.ceil(b.bottom)))
    t = cv2.resize(g[y0:y1, x0:x1], (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    t = cv2.GaussianBlur(t, (0, 0), 1.0)
    t -= t.mean()
    n = float(np.linalg.norm(t))
    return t / n if n > 1e-6 else t


@dataclass
class PresenceCheck:
    """Presence of the reference face in aligned crops (see the module docstring).

    Args:
        reference_crop: ``(S, S, 3) uint8`` the reference frame's aligned crop.
        cfg: the face settings (``presence_similarity``, ``plausible_score``).
        margin: ``align.margin`` of the crops.
    """

    reference_crop: np.ndarray
    cfg: FaceConfig
    margin: float
    referee_calls: int = 0
    _ref: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ref = thumbnail(self.reference_crop, self.margin)

    def similarity(self, crop: np.ndarray) -> float:
        """Correlation of ``crop``'s thumbnail with the reference's, -1..1."""
        return float((thumbnail(crop, self.margin) * self._ref).sum())

    def __call__(self, crop: np.ndarray) -> bool:
        if self.similarity(crop) >= self.cfg.presence_similarity:
            return True
        self.referee_calls += 1
        return referee_on_crop(to_gray(crop), self.margin) >= self.cfg.plausible_score


def scan_back(ref: int, present: Callable[[int], bool], every: int, lost: int) -> tuple[int, list[int]]:
    """First position of the face span, scanning from ``ref`` towards 0.

    Args:
        ref: the reference position (the face is there).
        present: presence oracle for a position ``< ref``.
        every: check interval in frames (0: no checks, the span starts at 0).
        lost: consecutive absent frames that make a loss.

    Returns:
        ``(first, glitches)``: the span's first position and the positions of isolated failed checks.
    """
    if every <= 0 or ref == 0:
        return 0, []
    glitches: list[int] = []
    good = ref
    c = ref - every
    while True:
        c = max(c, 0)
        if present(c):
            good = c
        else:
            run = range(c - 1, max(c - lost, -1), -1)  # the next lost - 1 frames towards 0
            if not any(present(p) for p in run):
                # confirmed (or nothing left before c): boundary between c and the last good check
                first = c + 1
                for p in range(good - 1, c, -1):
                    if not present(p):
                        first = p + 1
                        break
                return first, glitches
            glitches.append(c)
            good = c
        if c == 0:
            return 0, glitches
        c -= every


@dataclass
class ForwardSpan:
    """Forward presence bookkeeping for positions ``>= ref`` fed in increasing order.

    :meth:`push` takes each position with its crop and returns the positions that are now confirmed (to
    be stored, in order); ``lost`` turns true when the face is gone, and ``last`` is then the span's
    final position. Holds at most ``every + lost`` crops.
    """

    ref: int
    present: Callable[[np.ndarray], bool]
    every: int
    lost_frames: int
    pending: list[tuple[int, np.ndarray]] = field(default_factory=list)
    glitches: list[int] = field(default_factory=list)
    lost: bool = False
    last: int = -1
    _fails: list[tuple[int, np.ndarray]] = field(default_factory=list)
    _last_good: int = -1

    def push(self, pos: int, crop: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if self.lost:
            return []
        self.pending.append((pos, crop))
        if pos == self.ref or self.every <= 0:
            return self._confirm_all()
        if self._fails or (pos - self.ref) % self.every == 0:
            return self._check(pos, crop)
        return []

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """End of the clip: the last position is checked too (a face leaving in the final interval)."""
        if self.lost or not self.pending:
            return []
        pos, crop = self.pending[-1]
        if self._fails and self._fails[-1][0] == pos:
            return self._lose()
        out = self._check(pos, crop, final=True)
        return out if self.lost else out + self._confirm_all()

    def _check(self, pos: int, crop: np.ndarray, final: bool = False) -> list[tuple[int, np.ndarray]]:
        if self.present(crop):
            if self._fails:
                self.glitches.append(self._fails[0][0])
                self._fails = []
            return self._confirm_all()
        self._fails.append((pos, crop))
        if len(self._fails) >= self.lost_frames or final:
            return self._lose()
        return []

    def _confirm_all(self) -> list[tuple[int, np.ndarray]]:
        out, self.pending = self.pending, []
        if out:
            self._last_good = out[-1][0]
        return out

    def _lose(self) -> list[tuple[int, np.ndarray]]:
        """Loss confirmed at the first failed check: keep the pending frames before the first absent one."""
        first_fail = self._fails[0][0]
        keep = []
        for p, crop in self.pending:
            if p >= first_fail or not self.present(crop):
                break
            keep.append((p, crop))
        self.pending, self._fails, self.lost = [], [], True
        self.last = keep[-1][0] if keep else self._last_good
        return keep
