"""Optical flow and optical strain between aligned face crops (the inputs of most MER baselines).

The functional core of the flow stage: pure functions on arrays, no I/O.

Conventions:

* Frames are aligned crops ``(S, S, 3) uint8 RGB`` (or ``(S, S) uint8`` grey); flow is computed on grey
  images resized to ``size x size``.
* A flow field is ``(H, W, 2) float32``: ``u`` (x, to the right) and ``v`` (y, down) displacement in
  pixels of the grid it is given on, from frame ``a`` to frame ``b`` (``a(x) ~ b(x + flow(x))``): for the
  usual onset -> apex flow, ``a`` is the onset.
* Channels (:data:`CHANNELS`): ``u``, ``v``, ``magnitude = sqrt(u^2 + v^2)`` and the optical strain
  ``sqrt(ux^2 + vy^2 + 1/2 (uy + vx)^2)`` from central finite differences (``ux = du/dx`` ...; strain is
  dimensionless, so it does not change when the grid is resized).
* Normalisation (:func:`normalise`): ``none`` (pixels at the output grid), ``minmax`` (each channel of
  each sample mapped to [0, 1] by its own min and max: the STSTNet convention; a constant channel becomes
  0), or ``fixed`` (each value divided by one fixed ``scale`` and clipped to [-1, 1]: comparable across
  samples).

Backends (:data:`FLOW_BACKENDS`): ``dis`` (OpenCV's DIS, in every OpenCV build; the default),
``farneback`` (OpenCV core) and ``tvl1`` (Dual TV-L1, only in the ``opencv-contrib`` builds, which
provide ``cv2.optflow``; mepipe depends on ``opencv-python-headless``, so ``tvl1`` needs that wheel
*replaced* by ``opencv-contrib-python-headless`` of the same version, never both installed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mepipe.errors import ConfigError
from mepipe.registry import Registry

CHANNELS = ("u", "v", "magnitude", "strain")
NORMALISATIONS = ("none", "minmax", "fixed")

FlowFn = Callable[[np.ndarray, np.ndarray, dict[str, Any]], np.ndarray]
FLOW_BACKENDS: Registry[FlowFn] = Registry("optical flow backend")


def to_grey(frame: np.ndarray, size: int | None = None) -> np.ndarray:
    """``(S, S, 3) uint8 RGB`` or ``(S, S) uint8`` -> ``(size, size) uint8`` grey (area resize)."""
    import cv2

    g = frame if frame.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    if size is not None and g.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if g.shape[0] > size else cv2.INTER_LINEAR
        g = cv2.resize(g, (size, size), interpolation=interp)
    return np.ascontiguousarray(g)


_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


@FLOW_BACKENDS.register("dis")
def dis_flow(a: np.ndarray, b: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """OpenCV DIS flow (``preset``: ultrafast / fast / medium, default medium)."""
    import cv2

    preset = str(params.get("preset", "medium"))
    if preset not in _DIS_PRESETS:
        raise ConfigError(f"flow.params.preset={preset!r}: use one of {sorted(_DIS_PRESETS)}")
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    return dis.calc(a, b, None)


@FLOW_BACKENDS.register("farneback")
def farneback_flow(a: np.ndarray, b: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """OpenCV Farneback flow (``pyr_scale`` 0.5, ``levels`` 3, ``winsize`` 15, ``iterations`` 3,
    ``poly_n`` 5, ``poly_sigma`` 1.2 unless given)."""
    import cv2

    p = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}
    p.update(params)
    return cv2.calcOpticalFlowFarneback(
        a,
        b,
        None,
        float(p["pyr_scale"]),
        int(p["levels"]),
        int(p["winsize"]),
        int(p["iterations"]),
        int(p["poly_n"]),
        float(p["poly_sigma"]),
        0,
    )


def tvl1_available() -> bool:
    """True when the installed OpenCV has the contrib ``optflow`` module (Dual TV-L1)."""
    import cv2

    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def require_backend(name: str) -> None:
    """Raise :class:`ConfigError` now when flow backend ``name`` is unknown or cannot run here (``tvl1``
    without opencv-contrib), before any work starts."""
    FLOW_BACKENDS.get(name)
    if name == "tvl1":
        _require_tvl1()


def _require_tvl1() -> None:
    import cv2

    if not tvl1_available():
        raise ConfigError(
            f"flow.backend=tvl1 needs OpenCV's contrib module optflow, which this OpenCV "
            f"({cv2.__version__}) lacks. Replace the OpenCV wheel by its contrib build of the same version "
            "(pip uninstall -y opencv-python-headless && pip install 'opencv-contrib-python-headless<5'; "
            "never keep two OpenCV wheels), or use flow.backend=dis"
        )


@FLOW_BACKENDS.register("tvl1")
def tvl1_flow(a: np.ndarray, b: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Dual TV-L1 flow (``cv2.optflow``, opencv-contrib only); ``params`` go to
    ``DualTVL1OpticalFlow_create`` (``tau``, ``lambda_``, ``theta``, ``nscales``, ``warps``, ...)."""
    import cv2

    _require_tvl1()
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(**params)
    return tvl1.calc(a, b, None)


def compute_flow(
    a: np.ndarray, b: np.ndarray, *, backend: str = "dis", size: int | None = None, params: dict | None = None
) -> np.ndarray:
    """Dense optical flow from frame ``a`` to frame ``b``.

    Args:
        a, b: two frames of one clip, ``(S, S, 3) uint8 RGB`` or ``(S, S) uint8`` grey.
        backend: a name in :data:`FLOW_BACKENDS`.
        size: compute on ``size x size`` grey images (``None``: the frames' own size).
        params: backend parameters.

    Returns:
        ``(size, size, 2) float32`` flow in pixels of the ``size`` grid.
    """
    fn = FLOW_BACKENDS.get(backend)
    ga, gb = to_grey(a, size), to_grey(b, size)
    if ga.shape != gb.shape:
        raise ValueError(f"frames have different shapes {ga.shape} and {gb.shape}")
    flow = fn(ga, gb, dict(params or {}))
    return np.ascontiguousarray(flow, dtype=np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude ``sqrt(ux^2 + vy^2 + 1/2 (uy + vx)^2)`` of a ``(H, W, 2)`` flow field.

    Derivatives are central differences (one-sided at the border; :func:`numpy.gradient`), per pixel
    of the grid. Returns ``(H, W) float32``, dimensionless.

    Example: a uniform stretch ``u = 0.1 x`` gives ``ux = 0.1`` everywhere and a strain of 0.1; a pure
    translation gives 0.
    """
    f = np.asarray(flow, dtype=np.float64)
    if f.ndim != 3 or f.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {f.shape}")
    uy, ux = np.gradient(f[..., 0])
    vy, vx = np.gradient(f[..., 1])
    return np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2).astype(np.float32)


def flow_channels(flow: np.ndarray, channels: Sequence[str] = CHANNELS) -> np.ndarray:
    """Stack the requested channels (names in :data:`CHANNELS`) of a flow field: ``(H, W, C) float32``."""
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise ConfigError(f"flow.channels: unknown channel(s) {unknown}; valid: {list(CHANNELS)}")
    f = np.asarray(flow, dtype=np.float32)
    out = []
    for c in channels:
        if c == "u":
            out.append(f[..., 0])
        elif c == "v":
            out.append(f[..., 1])
        elif c == "magnitude":
            out.append(np.hypot(f[..., 0], f[..., 1]))
        else:
            out.append(optical_strain(f))
    return np.stack(out, axis=-1).astype(np.float32)


def resize_channels(x: np.ndarray, channels: Sequence[str], size: int) -> np.ndarray:
    """Resize ``(H, W, C)`` channels to ``(size, size, C)`` (area averaging when shrinking).

    Displacement channels (``u``, ``v``, ``magnitude``) are rescaled by ``size / W`` so they stay in
    pixels of the new grid; ``strain`` is dimensionless and kept as it is.
    """
    import cv2

    h, w = x.shape[:2]
    if (h, w) == (size, size):
        return np.asarray(x, dtype=np.float32).copy()
    interp = cv2.INTER_AREA if w > size else cv2.INTER_LINEAR
    out = np.stack(
        [
            cv2.resize(np.ascontiguousarray(x[..., k]), (size, size), interpolation=interp)
            for k in range(x.shape[2])
        ],
        axis=-1,
    ).astype(np.float32)
    f = size / float(w)
    for k, c in enumerate(channels):
        if c != "strain":
            out[..., k] *= f
    return out


def normalise(x: np.ndarray, mode: str = "none", scale: float | None = None) -> tuple[np.ndarray, dict]:
    """Normalise ``(H, W, C)`` channels of one sample.

    Args:
        mode: ``none`` (unchanged), ``minmax`` (per channel of this sample to [0, 1]; a constant
            channel becomes 0) or ``fixed`` (``x / scale`` clipped to [-1, 1]).
        scale: the divisor of ``fixed`` (required there, > 0).

    Returns:
        ``(normalised float32, record)``: ``record`` holds what is needed to undo it (``minmax``: per
        channel ``min`` and ``max`` lists; ``fixed``: ``scale``), stored next to the data.
    """
    x = np.asarray(x, dtype=np.float32)
    if mode == "none":
        return x.copy(), {"mode": "none"}
    if mode == "minmax":
        lo = x.reshape(-1, x.shape[-1]).min(0)
        hi = x.reshape(-1, x.shape[-1]).max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        out = np.where(hi > lo, (x - lo) / span, 0.0).astype(np.float32)
        return out, {"mode": "minmax", "min": lo.tolist(), "max": hi.tolist()}
    if mode == "fixed":
        if scale is None or not scale > 0:
            raise ConfigError(f"flow.normalisation=fixed needs flow.scale > 0, got {scale!r}")
        return np.clip(x / float(scale), -1.0, 1.0).astype(np.float32), {
            "mode": "fixed",
            "scale": float(scale),
        }
    raise ConfigError(f"flow.normalisation={mode!r}: use one of {list(NORMALISATIONS)}")


def unnormalise(x: np.ndarray, record: dict) -> np.ndarray | None:
    """Undo :func:`normalise` with the record it returned: ``(H, W, C) float32`` in the original units.

    ``minmax`` is undone exactly (a constant channel comes back as its constant); ``fixed`` only when
    nothing was clipped (no value at -1 or 1), else ``None`` (the original is lost: compute it again).
    """
    x = np.asarray(x, dtype=np.float32)
    mode = record.get("mode", "none")
    if mode == "none":
        return x.copy()
    if mode == "minmax":
        lo = np.asarray(record["min"], dtype=np.float32)
        hi = np.asarray(record["max"], dtype=np.float32)
        return (x * (hi - lo) + lo).astype(np.float32)
    if mode == "fixed":
        if np.any(np.abs(x) >= 1.0):
            return None
        return (x * float(record["scale"])).astype(np.float32)
    raise ValueError(f"unknown normalisation record {record!r}")


def frame_pairs(
    spec: str, onset_idx: int, apex_idx: int, offset_idx: int, n_frames: int, every: int = 1
) -> list[tuple[str, int, int]]:
    """The ``(name, i0, i1)`` frame pairs (0-based stored-frame indices) a flow spec asks for.

    Specs: ``onset_apex`` (the usual MER input), ``apex_offset`` (the return), ``onset_every`` (from the
    onset to every ``every``-th frame after it up to the offset: a flow sequence). Pairs whose two
    indices coincide (e.g. a clip whose apex is its onset) are left out.

    Example: ``frame_pairs("onset_every", 2, 6, 9, 12, every=3)`` ->
    ``[("onset_to_5", 2, 5), ("onset_to_8", 2, 8), ("onset_to_9", 2, 9)]``.
    """
    if not 0 <= onset_idx <= apex_idx <= offset_idx < n_frames:
        raise ValueError(
            f"keyframes onset {onset_idx} <= apex {apex_idx} <= offset {offset_idx} < {n_frames} do not hold"
        )
    if spec == "onset_apex":
        pairs = [("onset_apex", onset_idx, apex_idx)]
    elif spec == "apex_offset":
        pairs = [("apex_offset", apex_idx, offset_idx)]
    elif spec == "onset_every":
        if every < 1:
            raise ConfigError(f"flow.every must be >= 1, got {every}")
        targets = list(range(onset_idx + every, offset_idx + 1, every))
        if offset_idx > onset_idx and (not targets or targets[-1] != offset_idx):
            targets.append(offset_idx)
        pairs = [(f"onset_to_{t}", onset_idx, t) for t in targets]
    else:
        raise ConfigError(
            f"flow.pairs: unknown pair spec {spec!r}; use onset_apex, apex_offset or onset_every"
        )
    return [p for p in pairs if p[1] != p[2]]


def flow_sample(
    a: np.ndarray,
    b: np.ndarray,
    *,
    backend: str = "dis",
    size: int | None = None,
    params: dict | None = None,
    channels: Sequence[str] = CHANNELS,
    output_size: int | None = None,
    normalisation: str = "none",
    scale: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Flow ``a -> b``, its channels, resized to ``output_size`` and normalised: one model input.

    Returns:
        ``((N, N, C) float32, normalisation record)`` with ``N = output_size or size or S``.
    """
    flow = compute_flow(a, b, backend=backend, size=size, params=params)
    x = flow_channels(flow, channels)
    if output_size is not None:
        x = resize_channels(x, channels, output_size)
    return normalise(x, normalisation, scale)


@dataclass(frozen=True)
class FlowInput:
    """The flow input a flow-based model reads, and how it is made from an onset/apex pair.

    Attributes:
        channels: channel names (:data:`CHANNELS`), in the order the model sees them.
        size: side ``N`` of the model input (STSTNet: 28).
        normalisation, scale: per-sample normalisation (:func:`normalise`) of the ``N x N`` channels.
        backend, params: flow backend and its parameters (:data:`FLOW_BACKENDS`).
        compute_size: the flow is computed on grey crops of this side, then resized to ``size``
            (displacements rescaled, strain kept; :func:`resize_channels`).

    One sample is :meth:`from_frames` ``(N, N, C) float32``; a flow stored by the flow stage with the
    same backend, parameters and ``compute_size`` gives the same values (:meth:`from_stored`).
    """

    channels: tuple[str, ...] = ("u", "v", "strain")
    size: int = 28
    normalisation: str = "minmax"
    scale: float | None = None
    backend: str = "dis"
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    compute_size: int = 112

    def from_frames(self, onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
        """``(N, N, C) float32``: the input of one clip from its onset and apex crops ``(S, S, 3) uint8``."""
        x, _ = flow_sample(
            onset,
            apex,
            backend=self.backend,
            size=self.compute_size,
            params=self.params,
            channels=self.channels,
            output_size=self.size,
            normalisation=self.normalisation,
            scale=self.scale,
        )
        return x

    def from_stored(self, x: np.ndarray, channels: Sequence[str], record: dict) -> np.ndarray | None:
        """The input from a stored flow ``(M, M, C') float32`` with its ``channels`` and normalisation
        ``record``; ``None`` when a channel is missing or the stored values cannot be undone."""
        if not all(c in channels for c in self.channels):
            return None
        raw = unnormalise(x, record)
        if raw is None:
            return None
        picked = raw[..., [list(channels).index(c) for c in self.channels]]
        out, _ = normalise(resize_channels(picked, self.channels, self.size), self.normalisation, self.scale)
        return out

    def same_flow(self, backend: str, params: dict, compute_size: int) -> bool:
        """True when a flow made with these settings is the flow this input is computed from."""
        return (
            backend == self.backend
            and dict(params) == dict(self.params)
            and compute_size == self.compute_size
        )

    def with_flow(
        self, backend: str, params: dict | None = None, compute_size: int | None = None
    ) -> FlowInput:
        """This input made from another flow (e.g. the one a build stores)."""
        return replace(
            self,
            backend=backend,
            params=dict(params or {}),
            compute_size=self.compute_size if compute_size is None else int(compute_size),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (stored in ``model.pt``)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowInput:
        d = dict(data)
        d["channels"] = tuple(d.get("channels", cls.channels))
        d["params"] = dict(d.get("params") or {})
        return cls(**d)

    def key(self) -> str:
        """A string identifying these settings (cache keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        return (
            f"{','.join(self.channels)} at {self.size}x{self.size}, {self.normalisation}, "
            f"{self.backend} flow on {self.compute_size}-px grey crops"
        )


STSTNET_INPUT = FlowInput()
"""STSTNet's input (Liong et al. 2019): onset -> apex (u, v, optical strain), 28 x 28, each channel min-max
normalised per sample. The paper used TV-L1 flow; mepipe computes DIS unless the build stores another
(``mepipe flow OUT --backend tvl1``)."""
