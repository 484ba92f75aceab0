"""Keyframes: turn a clip's annotated onset/apex/offset into shard-local indices.

Index convention: the returned values are 0-based positions in the clip's stored frames, found by
matching the annotated *source frame numbers* against ``frame_numbers``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mepipe.records import ClipRecord


@dataclass(frozen=True)
class Keyframes:
    onset_idx: int
    apex_idx: int
    offset_idx: int
    source: str


def position_of(frame_numbers: np.ndarray, number: int | None) -> int | None:
    """0-based position of source frame ``number`` (the nearest stored frame at or before it)."""
    if number is None or len(frame_numbers) == 0:
        return None
    pos = int(np.searchsorted(frame_numbers, number, side="right")) - 1
    return min(max(pos, 0), len(frame_numbers) - 1)


def resolve_keyframes(clip: ClipRecord, frame_numbers: np.ndarray) -> Keyframes:
    """Annotated keyframes as indices; a missing onset/offset becomes the first/last frame and a
    missing apex the midpoint, with ``source`` saying so (``annotated`` when nothing was filled)."""
    n = len(frame_numbers)
    on = position_of(frame_numbers, clip.onset)
    off = position_of(frame_numbers, clip.offset)
    ap = position_of(frame_numbers, clip.apex)
    filled = []
    if on is None:
        on, _ = 0, filled.append("onset=first")
    if off is None:
        off, _ = n - 1, filled.append("offset=last")
    if ap is None:
        ap, _ = (on + off) // 2, filled.append("apex=midpoint")
    source = clip.keyframe_source if not filled else ",".join(filled)
    if clip.keyframe_source not in ("annotated", "apex_missing") and filled:
        source = f"{clip.keyframe_source};{source}"
    return Keyframes(on, ap, off, source)
