"""Keyframes: onset, apex and offset of each clip, annotated, estimated from facial motion, or uniform.

Index convention: every value returned here is a 0-based position in the clip's stored (aligned)
frames. Annotations are source frame numbers and are matched against ``frame_numbers``.

Estimation (``keyframes.mode`` ``estimate``, or ``annotated`` with a keyframe missing) works on the
aligned crops of one clip:

1. every crop is converted to grey and resized to ``analysis_size`` (``A``), and brightness is
   normalised to the first frame's mean inside the face;
2. dense optical flow (OpenCV DIS) from the first frame to frame ``t`` gives the displacement of
   every pixel; an affine motion fitted robustly over the whole face is subtracted, so head drift
   left over after the one-transform-per-clip alignment does not count as expression;
3. the motion energy ``E(t)`` is the mean residual displacement (pixels at size ``A``) inside the
   landmark regions (brows, eyes, nose, mouth: discs of ``region_radius`` x inter-ocular distance
   around each landmark, landmarks mapped into the crop with ``apply_transform(M, landmarks_ref)``);
4. ``E`` is smoothed with a Gaussian of ``smooth_ms`` milliseconds (so 30 and 200 fps clips are
   treated alike); ``floor`` is its 10th percentile and ``sigma`` the frame-to-frame noise of the raw
   curve (robust spread of ``diff(E)`` / sqrt 2);
5. apex = argmax of the smoothed curve; with ``thr = floor + max(noise_k * sigma, rise * (peak - floor))``
   the rise that holds the apex is found where the curve crosses ``thr``, and the onset is then
   walked back, while the curve keeps falling and stays above ``floor``, to where the rise starts
   (the first rise above the noise floor); the offset is found the same way after the apex (the
   return), or is the last frame if the curve never comes back down.

Worked example: a 30 fps clip of 60 frames whose mouth corners move from frame 20, peak at 35 and are
back at 50 gives a curve near 0 until 20, a smooth bump with its maximum at 35 and a return at about
50; ``smooth_ms=30`` is a 0.9-frame Gaussian at 30 fps and a 6-frame one at 200 fps.

Measured on synthetic data with known keyframes: see ``benchmarks/keyframe_accuracy.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mepipe.config import KeyframeConfig
from mepipe.face.geometry import inter_ocular
from mepipe.records import ClipRecord

REGION_POINTS: dict[str, slice] = {
    "brows": slice(17, 27),
    "nose": slice(27, 36),
    "eyes": slice(36, 48),
    "mouth": slice(48, 68),
}
"""iBUG 68-point index ranges of the regions the motion energy is measured in."""

NAMED_ORIGINS = ("annotated", "estimated", "uniform")


@dataclass(frozen=True)
class Keyframes:
    """Keyframes of one clip as 0-based indices into its stored frames.

    Attributes:
        onset_idx, apex_idx, offset_idx: indices, ``onset <= apex <= offset``.
        source: where they come from: one word when all three share it (``annotated``, ``estimated``,
            ``uniform``, or an adapter's own word such as ``sequence``), else
            ``onset=<origin>,apex=<origin>,offset=<origin>`` (e.g. ``onset=annotated,apex=estimated,offset=annotated``).
        curve: ``(T,) float32`` smoothed motion energy when anything was estimated, else ``None``.
        snr: ``(peak - floor) / sigma`` of the curve (``None`` when nothing was estimated).
        note: a sentence when the estimate is weak (no clear motion), else ``''``.
    """

    onset_idx: int
    apex_idx: int
    offset_idx: int
    source: str
    curve: np.ndarray | None = None
    snr: float | None = None
    note: str = ""


def position_of(frame_numbers: np.ndarray, number: int | None) -> int | None:
    """0-based position of source frame ``number`` (the nearest stored frame at or before it)."""
    if number is None or len(frame_numbers) == 0:
        return None
    pos = int(np.searchsorted(frame_numbers, number, side="right")) - 1
    return min(max(pos, 0), len(frame_numbers) - 1)


# ----------------------------------------------------------------------------------------- motion energy


def region_mask(crop_points: np.ndarray, size: int, regions: tuple[str, ...], radius: float) -> np.ndarray:
    """``(size, size) bool`` union of discs around the landmarks of ``regions``.

    Args:
        crop_points: ``(68, 2)`` landmarks in the coordinates of the ``size x size`` image.
        radius: disc radius as a fraction of the inter-ocular distance of ``crop_points``.
    """
    mask = np.zeros((size, size), np.uint8)
    r = max(1, int(round(radius * inter_ocular(crop_points))))
    for name in regions:
        for x, y in np.asarray(crop_points)[REGION_POINTS[name]]:
            cv2.circle(mask, (int(round(x)), int(round(y))), r, 1, -1)
    return mask.astype(bool)


def face_mask(crop_points: np.ndarray, size: int) -> np.ndarray:
    """``(size, size) bool`` convex hull of the 68 landmarks plus the forehead above the brows."""
    pts = np.asarray(crop_points, dtype=np.float64)
    brows = pts[17:27].copy()
    lift = 0.35 * inter_ocular(pts)
    top = brows - [0.0, lift]
    hull = cv2.convexHull(np.round(np.vstack([pts, top])).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def _fit_affine(a: np.ndarray, d: np.ndarray, keep: float = 0.7) -> np.ndarray:
    """Robust affine fit of displacements ``d`` ``(N, 2)`` with design matrix ``a`` ``(N, 3)`` (``x, y, 1``):
    least squares, then again on the ``keep`` fraction with the smallest residuals.

    Returns:
        ``(3, 2)`` coefficients: the fitted displacement at ``a`` is ``a @ coef``.
    """
    coef = np.linalg.solve(a.T @ a + 1e-9 * np.eye(3), a.T @ d)
    res = np.einsum("ij,ij->i", d - a @ coef, d - a @ coef)
    k = int(keep * len(res))
    if k >= 6:
        sel = res <= np.partition(res, k - 1)[k - 1]
        a2, d2 = a[sel], d[sel]
        coef = np.linalg.solve(a2.T @ a2 + 1e-9 * np.eye(3), a2.T @ d2)
    return coef


class MotionEnergyStream:
    """The motion-energy curve of a clip computed from its aligned crops fed one at a time.

    Holds only the first (reference) frame's grey copy and one number per frame, whatever the clip's
    length, so keyframes can be estimated while frames stream to the shard writer. Feeding every crop
    of a clip in order gives exactly :func:`motion_energy` of the whole array.

    Args:
        crop_points: ``(68, 2)`` landmarks of the reference frame in crop pixels.
        size: side S of the ``(S, S, 3) uint8`` crops that will be added.
        cfg: estimator settings (defaults when ``None``).

    Example::

        stream = MotionEnergyStream(crop_points, 224, cfg)
        for crop in crops:          # (224, 224, 3) uint8, temporal order
            stream.add(crop)
        energy = stream.energy()    # (T,) float64
    """

    def __init__(self, crop_points: np.ndarray, size: int, cfg: KeyframeConfig | None = None) -> None:
        cfg = cfg or KeyframeConfig()
        self.size = int(size)
        a = self.a = min(cfg.analysis_size, self.size)
        pts = np.asarray(crop_points, dtype=np.float64) * (a / self.size)
        roi = region_mask(pts, a, cfg.regions, cfg.region_radius)
        face = face_mask(pts, a) | roi
        self.usable = bool(roi.sum() >= 4 and face.sum() >= 16)
        fit_mask = face.copy()
        fit_mask[1::2, :] = False  # the affine fit uses every other row: a quarter of the work, same answer
        fit_mask[:, 1::2] = False
        self._fy, self._fx = np.nonzero(fit_mask)
        self._ry, self._rx = np.nonzero(roi)
        self._design = np.column_stack([self._fx / a, self._fy / a, np.ones(len(self._fx))])
        self._design_roi = np.column_stack([self._rx / a, self._ry / a, np.ones(len(self._rx))])
        self._face = face
        self._dis = None
        self._ref: np.ndarray | None = None
        self._ref_mean = 1.0
        self._values: list[float] = []

    def __len__(self) -> int:
        return len(self._values)

    def _grey(self, crop: np.ndarray) -> np.ndarray:
        if crop.shape != (self.size, self.size, 3) or crop.dtype != np.uint8:
            raise ValueError(
                f"crop is {crop.shape} {crop.dtype}, expected ({self.size}, {self.size}, 3) uint8"
            )
        g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        return g if self.size == self.a else cv2.resize(g, (self.a, self.a), interpolation=cv2.INTER_AREA)

    def add(self, crop: np.ndarray) -> None:
        """Add the next crop (``(S, S, 3) uint8`` RGB, temporal order)."""
        g = self._grey(crop)
        if self._ref is None:
            self._ref = g
            self._ref_mean = float(g[self._face].mean()) or 1.0
            self._values.append(0.0)
            return
        if not self.usable:
            self._values.append(0.0)
            return
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        m = float(g[self._face].mean()) or 1.0
        if abs(m - self._ref_mean) > 0.5:
            g = cv2.convertScaleAbs(g, alpha=self._ref_mean / m)
        flow = self._dis.calc(self._ref, g, None)
        coef = _fit_affine(self._design, flow[self._fy, self._fx].astype(np.float64))
        res = flow[self._ry, self._rx].astype(np.float64) - self._design_roi @ coef
        self._values.append(float(np.sqrt(np.einsum("ij,ij->i", res, res)).mean()))

    def energy(self) -> np.ndarray:
        """``(T,) float64`` raw motion energy of the crops added so far (see :func:`motion_energy`)."""
        e = np.asarray(self._values, dtype=np.float64)
        if len(e) < 2 or not self.usable:
            return np.zeros(len(e))
        e[0] = e[1]
        return e


def motion_energy(
    frames: np.ndarray, crop_points: np.ndarray, cfg: KeyframeConfig | None = None
) -> np.ndarray:
    """Raw (unsmoothed) motion energy of every frame relative to the first one.

    Args:
        frames: ``(T, S, S, 3) uint8`` aligned RGB crops of one clip, in temporal order.
        crop_points: ``(68, 2)`` landmarks of the reference frame in crop pixels.
        cfg: estimator settings (defaults when ``None``).

    Returns:
        ``(T,) float64``: mean residual displacement in the landmark regions, in pixels at
        ``cfg.analysis_size``; ``E[0]`` is set to ``E[1]`` (frame 0 against itself is exactly 0, which
        would look like an artificial dip). :class:`MotionEnergyStream` computes the same curve from
        crops fed one at a time.
    """
    if len(frames) < 2:
        return np.zeros(len(frames))
    stream = MotionEnergyStream(crop_points, frames.shape[1], cfg)
    for f in frames:
        stream.add(f)
    return stream.energy()


def smooth_curve(energy: np.ndarray, fps: float, smooth_ms: float) -> np.ndarray:
    """Gaussian smoothing with sigma ``smooth_ms`` milliseconds (edges padded by reflection)."""
    e = np.asarray(energy, dtype=np.float64)
    sigma = smooth_ms * fps / 1000.0
    if sigma < 0.3 or len(e) < 3:
        return e.copy()
    half = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(e, half, mode="reflect" if len(e) > half else "edge")
    return np.convolve(padded, k, mode="valid")


@dataclass(frozen=True)
class Estimate:
    """Result of :func:`estimate_from_curve` (indices into the curve)."""

    onset: int
    apex: int
    offset: int
    smooth: np.ndarray
    snr: float


def estimate_from_curve(
    energy: np.ndarray, fps: float, cfg: KeyframeConfig | None = None, *, lo: int = 0, hi: int | None = None
) -> Estimate:
    """Onset/apex/offset from a motion-energy curve (steps 4-5 of the module docstring).

    Args:
        energy: ``(T,)`` raw motion energy (see :func:`motion_energy`).
        fps: frame rate of the curve's samples (frames per second).
        lo, hi: the apex is searched in ``lo..hi`` inclusive (e.g. between annotated onset and offset).

    Returns:
        :class:`Estimate` with 0-based indices, ``onset <= apex <= offset``.
    """
    cfg = cfg or KeyframeConfig()
    e = np.asarray(energy, dtype=np.float64)
    n = len(e)
    hi = n - 1 if hi is None else min(hi, n - 1)
    lo = max(0, min(lo, hi))
    if n == 0:
        raise ValueError("empty motion-energy curve")
    sm = smooth_curve(e, fps, cfg.smooth_ms)
    apex = lo + int(np.argmax(sm[lo : hi + 1]))
    floor = float(np.percentile(sm, 10))
    d = np.diff(e)
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0) if n > 2 else 0.0
    peak = float(sm[apex])
    amp = peak - floor
    thr = floor + max(cfg.noise_k * sigma, cfg.rise * amp)
    onset = apex
    while onset > 0 and sm[onset - 1] > thr:
        onset -= 1
    while onset > 0 and floor < sm[onset - 1] < sm[onset]:
        onset -= 1
    offset = apex
    while offset < n - 1 and sm[offset] > thr:
        offset += 1
    while offset < n - 1 and floor < sm[offset + 1] < sm[offset]:
        offset += 1
    snr = amp / sigma if sigma > 0 else (float("inf") if amp > 0 else 0.0)
    return Estimate(onset, apex, offset, sm, float(snr))


# ----------------------------------------------------------------------------------------- resolution


def _source_word(given: dict[str, str]) -> str:
    words = set(given.values())
    if len(words) == 1:
        return words.pop()
    return ",".join(f"{k}={given[k]}" for k in ("onset", "apex", "offset"))


def needs_estimate(clip: ClipRecord, frame_numbers: np.ndarray, cfg: KeyframeConfig | None = None) -> bool:
    """True when :func:`resolve_keyframes` estimates something from facial motion for ``clip`` stored
    as ``frame_numbers`` (so its motion-energy curve is needed): ``estimate`` mode, or ``annotated``
    with a keyframe missing or not among the frames (e.g. outside the face span)."""
    cfg = cfg or KeyframeConfig()
    if cfg.mode == "uniform":
        return False
    if cfg.mode == "estimate":
        return True
    return any(position_of(frame_numbers, v) is None for v in (clip.onset, clip.apex, clip.offset))


def resolve_keyframes(
    clip: ClipRecord,
    frame_numbers: np.ndarray,
    *,
    frames: np.ndarray | None = None,
    crop_points: np.ndarray | None = None,
    fps: float | None = None,
    cfg: KeyframeConfig | None = None,
    energy: np.ndarray | None = None,
) -> Keyframes:
    """The clip's keyframes as indices into its stored frames.

    ``cfg.mode``:

    * ``annotated`` (default): annotated onset/apex/offset are used; a missing one is estimated from
      the aligned ``frames`` (the apex inside the annotated onset..offset). Without ``frames`` a
      missing onset/offset becomes the first/last frame and a missing apex the midpoint (the old
      behaviour, kept for callers that have no pixels).
    * ``estimate``: all three are estimated, annotations are ignored.
    * ``uniform``: first / middle / last frame (clip-labelled data without temporal annotation).

    Args:
        clip: the adapter record (annotations in source frame numbers; ``keyframe_source`` names the
            origin of the annotated values, ``annotated`` unless the adapter says otherwise).
        frame_numbers: ``(T,)`` source frame number of each stored frame.
        frames: ``(T, S, S, 3) uint8`` aligned crops (needed to estimate).
        crop_points: ``(68, 2)`` reference landmarks in crop pixels (needed to estimate).
        fps: frame rate (default ``clip.fps``).
        energy: ``(T,)`` raw motion energy already computed (e.g. by :class:`MotionEnergyStream`
            while the frames streamed to the shard); used instead of ``frames``/``crop_points``.
    """
    cfg = cfg or KeyframeConfig()
    n = len(frame_numbers)
    if n == 0:
        raise ValueError(f"clip {clip.clip_id}: no frames")
    if cfg.mode == "uniform":
        return Keyframes(0, (n - 1) // 2, n - 1, "uniform")
    given_word = (
        "annotated" if clip.keyframe_source in ("annotated", "apex_missing", "") else clip.keyframe_source
    )
    if cfg.mode == "estimate":
        on = ap = off = None
    else:
        on = position_of(frame_numbers, clip.onset)
        ap = position_of(frame_numbers, clip.apex)
        off = position_of(frame_numbers, clip.offset)
    origin = {"onset": given_word, "apex": given_word, "offset": given_word}
    if on is not None and ap is not None and off is not None:
        return Keyframes(on, ap, off, _source_word(origin))
    if energy is not None and len(energy) != n:
        raise ValueError(f"clip {clip.clip_id}: energy has {len(energy)} values for {n} frames")
    can_estimate = energy is not None or (frames is not None and crop_points is not None and len(frames) == n)
    if not can_estimate:
        filled = []
        if on is None:
            on, _ = 0, filled.append("onset=first")
        if off is None:
            off, _ = n - 1, filled.append("offset=last")
        if ap is None:
            ap, _ = (on + off) // 2, filled.append("apex=midpoint")
        return Keyframes(on, ap, off, ",".join(filled))
    if energy is None:
        assert frames is not None and crop_points is not None
        energy = motion_energy(frames, crop_points, cfg)
    lo = on if on is not None else 0
    hi = off if off is not None else n - 1
    est = estimate_from_curve(energy, fps or clip.fps, cfg, lo=lo, hi=hi)
    if ap is None:
        ap, origin["apex"] = est.apex, "estimated"
    if on is None:
        on, origin["onset"] = min(est.onset, ap), "estimated"
    if off is None:
        off, origin["offset"] = max(est.offset, ap), "estimated"
    note = ""
    if est.snr < 2 * max(cfg.noise_k, 1.0):
        note = (
            f"keyframes: weak facial motion (snr {est.snr:.1f}); the estimated keyframes are unreliable, "
            "consider keyframes.mode=uniform for this dataset"
        )
    return Keyframes(on, ap, off, _source_word(origin), est.smooth.astype(np.float32), est.snr, note)


# ----------------------------------------------------------------------------------------- subsampling


def keep_indices(n: int, *, step: int = 1, max_frames: int = 0, always: tuple[int, ...] = ()) -> np.ndarray:
    """Which of ``n`` frames to store: every ``step``-th, then at most ``max_frames`` evenly spread,
    always including ``always`` (keyframes, the reference frame).

    Example: ``n=10, step=3, always=(4,)`` keeps ``[0, 3, 4, 6, 9]``; with ``max_frames=3`` the forced
    frame 4 is kept and two of the others: ``[0, 4, 9]``.

    Returns:
        ``(K,) int64`` ascending positions in ``0..n-1``.
    """
    forced = sorted({int(i) for i in always if 0 <= i < n})
    base = np.arange(0, n, max(1, step))
    others = np.setdiff1d(base, forced)
    if max_frames and len(others) + len(forced) > max_frames:
        room = max(0, max_frames - len(forced))
        if room == 0:
            others = others[:0]
        elif room == 1:
            others = others[:1]
        else:
            pick = np.unique(np.round(np.linspace(0, len(others) - 1, room)).astype(np.int64))
            others = others[pick]
    return np.union1d(others, np.asarray(forced, dtype=np.int64)).astype(np.int64)
