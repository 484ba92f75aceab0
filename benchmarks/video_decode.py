"""Video decoders side by side: PyAV vs decord, sequential decode to RGB arrays, on our clips.

The frames are those of a synthetic DFEW-layout clip (the astronaut-derived face on a 640x480 canvas,
written by ``mepipe.synth``), re-encoded in the three codecs MER/DFER datasets ship: mp4v (MPEG-4
part 2, what ``cv2.VideoWriter`` writes and the synthetic DFEW set uses), H.264 (libx264 through
PyAV, the codec of most macro sets) and MJPG (.avi, some lab recordings). Each decoder reads every
frame front to back into a ``(H, W, 3) uint8 RGB`` array, as a build worker does, with one decoder
thread (the build's default ``video.decode_threads: 1``: one worker process per core) and with the
decoder's automatic thread count. Each measurement is the best of ``--repeats`` runs, the decoders
alternating, so both see the same machine load.

Usage: python benchmarks/video_decode.py [--frames 300] [--repeats 3]
Prints frames/s per codec and decoder (wall clock, and per CPU-second of the process, which is what
a build with one worker per core gets), and the ratios decord / PyAV.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from mepipe.decoders import DECODERS
from mepipe.synth import synthesize


def source_frames(tmp: Path, n: int) -> list[np.ndarray]:
    """``n`` RGB frames (640x480) of synthetic DFEW clips, concatenated."""
    synthesize("dfew", tmp / "dfew", subjects=2, clips_per_subject=4, seed=0)
    frames: list[np.ndarray] = []
    for path in sorted((tmp / "dfew").rglob("*.mp4")):
        cap = cv2.VideoCapture(str(path))
        while len(frames) < n:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(bgr[:, :, ::-1].copy())
        cap.release()
        if len(frames) >= n:
            break
    return frames


def write_cv2(path: Path, frames: list[np.ndarray], fourcc: str) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (w, h))
    for f in frames:
        vw.write(np.ascontiguousarray(f[:, :, ::-1]))
    vw.release()
    return path


def write_h264(path: Path, frames: list[np.ndarray]) -> Path:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = Fraction(1, 25)
        for k, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = k
            for pkt in s.encode(vf):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def decode_rate(decoder: str, path: Path, threads: int) -> tuple[float, int, float, float]:
    """Open ``path`` with the registered ``decoder`` and decode every frame in order.

    Returns:
        (frames/s of the decode loop (wall clock), frames decoded, seconds to open the file, frames
        per CPU-second of this process (all its threads: decord decodes ahead in a thread of its own)).
    """
    from mepipe.records import ClipRecord

    clip = ClipRecord("bench", "s", path.stem, "video", str(path))
    t0 = time.perf_counter()
    src = DECODERS.get(decoder)(clip, decode_threads=threads)
    t1, c1 = time.perf_counter(), time.process_time()
    n = 0
    for _, frame in src.iter_range(0, len(src)):
        n += 1 if frame.shape[2] == 3 else 0
    t2, c2 = time.perf_counter(), time.process_time()
    src.close()
    return n / (t2 - t1), n, t1 - t0, n / max(c2 - c1, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = source_frames(tmp, args.frames)
        files = {
            "mp4v (.mp4)": write_cv2(tmp / "clip_mp4v.mp4", frames, "mp4v"),
            "H.264 (.mp4)": write_h264(tmp / "clip_h264.mp4", frames),
            "MJPG (.avi)": write_cv2(tmp / "clip_mjpg.avi", frames, "MJPG"),
        }
        h, w = frames[0].shape[:2]
        print(f"{len(frames)} frames of {w}x{h}; best of {args.repeats} runs; frames/s of sequential decode")
        print()
        print(
            "| codec | threads | PyAV frames/s | decord frames/s | decord / PyAV | "
            "frames per CPU-s PyAV / decord | decord / PyAV per CPU-s | open ms PyAV / decord |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for codec, path in files.items():
            for threads in (1, 0):
                best = {"pyav": (0.0, 0, 0.0, 0.0), "decord": (0.0, 0, 0.0, 0.0)}
                for _ in range(args.repeats):
                    for dec in ("pyav", "decord"):
                        r = decode_rate(dec, path, threads)
                        if r[0] > best[dec][0]:
                            best[dec] = r
                pa, de = best["pyav"], best["decord"]
                assert pa[1] == de[1] == len(frames), (codec, pa[1], de[1])
                print(
                    f"| {codec} | {threads or 'auto'} | {pa[0]:.0f} | {de[0]:.0f} | {de[0] / pa[0]:.2f}x | "
                    f"{pa[3]:.0f} / {de[3]:.0f} | {de[3] / pa[3]:.2f}x | {1000 * pa[2]:.1f} / {1000 * de[2]:.1f} |"
                )


if __name__ == "__main__":
    main()
