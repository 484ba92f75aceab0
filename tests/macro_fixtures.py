"""Helpers for the macro/video tests: astronaut-face frames with a controllable "expression" and head
drift, written as videos (cv2.VideoWriter, or PyAV for variable frame rate / grayscale H.264)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from mepipe.synth.photo import astronaut

_FACE = astronaut()[40:230, 130:320]  # (190, 190, 3) RGB: the face (~87 px box) with margin


def raised_cosine(n: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """``(n,)`` intensity: 0 before onset, rising to 1 at apex, back to 0 at offset."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    up = (t >= onset) & (t <= apex)
    down = (t > apex) & (t <= offset)
    out[up] = 0.5 * (1 - np.cos(np.pi * (t[up] - onset) / max(apex - onset, 1)))
    out[down] = 0.5 * (1 + np.cos(np.pi * (t[down] - apex) / max(offset - apex, 1)))
    return out


def face_frame(
    size: tuple[int, int] = (320, 240),
    face: int = 200,
    *,
    smile: float = 0.0,
    dx: float = 0.0,
    dy: float = 0.0,
    visible: bool = True,
) -> np.ndarray:
    """``(H, W, 3) uint8 RGB``: the astronaut's face (``face`` px square) on a grey canvas.

    ``smile`` (0..1) pulls the mouth corners outwards and up by up to 3 % of ``face`` (a local warp,
    like AU12); ``dx, dy`` shift the whole head; ``visible=False`` gives the empty canvas.
    """
    w, h = size
    canvas = np.full((h, w, 3), 96, np.uint8)
    if not visible:
        return canvas
    img = cv2.resize(_FACE, (face, face), interpolation=cv2.INTER_AREA)
    if smile:
        yy, xx = np.mgrid[0:face, 0:face].astype(np.float32)
        amp = 0.03 * face * smile
        mx = np.zeros_like(xx)
        my = np.zeros_like(yy)
        # the mouth corners of the astronaut sit at (201, 139) and (245, 141) in the 512 x 512 photo
        for cx, sgn in ((71 / 190 * face, -1.0), (115 / 190 * face, 1.0)):
            g = np.exp(-((xx - cx) ** 2 + (yy - 100 / 190 * face) ** 2) / (2 * (0.05 * face) ** 2))
            mx += sgn * amp * g
            my += -0.5 * amp * g
        img = cv2.remap(img, xx - mx, yy - my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x0, y0 = (w - face) // 2, (h - face) // 2
    canvas[y0 : y0 + face, x0 : x0 + face] = img
    if dx or dy:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        canvas = cv2.warpAffine(canvas, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return canvas


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    """Write RGB frames with ``cv2.VideoWriter`` (``mp4v``/.mp4 or ``MJPG``/.avi); grey frames allowed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    colour = frames[0].ndim == 3
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), colour)
    for f in frames:
        vw.write(f[:, :, ::-1] if colour else f)
    vw.release()
    return path


def write_h264(
    path: Path,
    frames: list[np.ndarray],
    *,
    times_ms: list[int] | None = None,
    grey: bool = False,
    faststart: bool = False,
) -> Path:
    """Write H.264 with PyAV: ``times_ms`` gives each frame's presentation time (variable frame
    rate); ``grey`` stores a luma-only (``gray``) stream; ``faststart`` puts the index first."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        s = c.add_stream("libx264", rate=25, options={"bf": "0"})
        s.width, s.height, s.pix_fmt = w, h, "gray" if grey else "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for k, f in enumerate(frames):
            if grey:
                vf = av.VideoFrame.from_ndarray(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), format="gray")
            else:
                vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = times_ms[k] if times_ms is not None else 40 * k
            vf.time_base = Fraction(1, 1000)
            for pkt in s.encode(vf):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def expression_clip(
    n: int = 24,
    onset: int = 5,
    apex: int = 12,
    offset: int = 20,
    *,
    drift: float = 0.0,
    size: tuple[int, int] = (320, 240),
    face: int = 200,
    visible_from: int = 0,
) -> list[np.ndarray]:
    """Frames of one clip with a smile following a raised cosine and a slow horizontal head drift of
    up to ``drift`` px; frames before ``visible_from`` show no face."""
    a = raised_cosine(n, onset, apex, offset)
    return [
        face_frame(
            size,
            face,
            smile=float(a[k]),
            dx=drift * np.sin(np.pi * k / max(n - 1, 1)),
            visible=k >= visible_from,
        )
        for k in range(n)
    ]
