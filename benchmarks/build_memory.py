"""Peak memory of a build: does it grow with the clip's length or the dataset's size?

Four builds, each in its own process, each measured by its peak resident set size (``ru_maxrss`` of
that process, from ``os.wait4``; a 1-worker build runs its task in that process):

* one video clip of 600 frames vs the same clip looped to 6,000 frames (a long video, as SAMM or
  CAS(ME)^3 long videos are);
* 20 short video clips vs 200 of them (a dataset ten times larger).

Both columns run the same builds with two versions of mepipe: this checkout (the streaming path:
crops go to the shard as they are made) and a baseline commit (``--baseline REF``, default ``main``,
exported with ``git archive`` into a temporary folder), e.g. the in-memory path, which held every
aligned crop of a clip until it was stored. The ratio 6,000 / 600 and 200 / 20 is printed per
column (goal: within +15 %, i.e. <= 1.15).

The data are synthetic 320x240 mp4v videos of the astronaut's face with a periodic smile and head
drift (``tests.macro_fixtures.face_frame``), written frame by frame. The pipeline is DFEW-like:
224-px crops, ``align.mode: clip``, keyframes estimated from facial motion, JPEG frames.

Usage: python benchmarks/build_memory.py [--baseline main] [--encoding jpeg] [--long 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.macro_fixtures import face_frame  # noqa: E402

CHILD = """
import json, sys
from mepipe.build import build_dataset
from mepipe.config import parse_config
cfg = parse_config(json.loads(sys.argv[1]))
s = build_dataset(cfg, sys.argv[2], sys.argv[3], workers=1)
print(json.dumps({"ok": s.clips_ok, "failed": s.clips_failed, "frames": s.frames, "seconds": s.seconds}))
"""


def config(encoding: str) -> dict:
    return {
        "name": "memory",
        "dataset": {"adapter": "folder", "options": {}},
        "face": {"min_face": 60, "reference": "first"},
        "align": {"crop_size": 224, "mode": "clip"},
        "keyframes": {"mode": "estimate"},
        "storage": {"encoding": encoding},
        "shards": {"max_clips": 64},
    }


def write_clip(path: Path, n: int, period: int = 60, seed: int = 0) -> None:
    """An ``n``-frame 25 fps mp4v video: a smile every ``period`` frames, a slow head drift; written
    frame by frame (never all in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    phase = int(rng.integers(period))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240), True)
    smiles = [face_frame(smile=s)[:, :, ::-1] for s in np.linspace(0, 1, 11)]
    for k in range(n):
        t = ((k + phase) % period) / period
        s = max(0.0, np.sin(2 * np.pi * t))
        frame = smiles[int(round(s * 10))]
        dx = 2.0 * np.sin(2 * np.pi * k / 500)
        m = np.float32([[1, 0, dx], [0, 1, 0]])
        vw.write(cv2.warpAffine(frame, m, (320, 240), borderMode=cv2.BORDER_REPLICATE))
    vw.release()


def make_data(data: Path, long_n: int) -> dict[str, Path]:
    sets = {
        "clip_600": (1, 600),
        f"clip_{long_n}": (1, long_n),
        "clips_20": (20, 40),
        "clips_200": (200, 40),
    }
    out = {}
    for name, (count, n) in sets.items():
        folder = data / name
        done = folder / ".complete"
        if not done.is_file():
            for k in range(count):
                write_clip(folder / f"c{k:03d}.mp4", n, seed=k)
            done.write_text("ok")
        out[name] = folder
    return out


def export(ref: str, dest: Path) -> str:
    """``git archive REF`` of this repository into ``dest``; returns the commit it is."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return commit


def measure(code: Path, cfg: dict, source: Path, out: Path) -> dict:
    """Build ``source`` with the mepipe in ``code`` in a fresh process; its peak RSS and result."""
    env = dict(os.environ, PYTHONPATH=str(code))
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{out.name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as err:
        p = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(cfg), str(source), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=str(code),
        )
        stdout = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
    code_ = os.waitstatus_to_exitcode(status)
    if code_ != 0:
        raise SystemExit(f"build of {source} with {code} failed ({code_}):\n{log.read_text()[-3000:]}")
    res = json.loads(stdout.strip().splitlines()[-1])
    res["peak_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    res["wall"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", help="git ref of the baseline column (default main)")
    ap.add_argument("--encoding", default="jpeg", choices=["raw", "jpeg"])
    ap.add_argument("--long", type=int, default=6000, help="frames of the long clip (default 6000)")
    ap.add_argument("--data", type=Path, default=None, help="folder for the videos (kept; default temp)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mepipe-mem-"))
    data = make_data(args.data or tmp / "data", args.long)
    base_code = tmp / "baseline"
    base_commit = export(args.baseline, base_code)
    this_commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "mepipe"], capture_output=True, text=True
    )
    this_label = f"this checkout ({this_commit}{'+changes' if dirty.stdout.strip() else ''})"
    cfg = config(args.encoding)
    print(
        f"load average {os.getloadavg()[0]:.2f}; encoding {args.encoding}; crop 224; python {sys.version.split()[0]}"
    )
    cols = {f"baseline {args.baseline} ({base_commit})": base_code, this_label: ROOT}
    results: dict[str, dict[str, dict]] = {}
    for label, code in cols.items():
        results[label] = {}
        for name, source in data.items():
            r = measure(code, cfg, source, tmp / "out" / f"{len(results)}-{name}")
            results[label][name] = r
            print(
                f"  {label:<32} {name:<11} peak {r['peak_mib']:7.0f} MiB  {r['ok']} ok {r['failed']} failed "
                f"{r['frames']} frames, {r['wall']:.0f} s",
                flush=True,
            )
    long_name = f"clip_{args.long}"
    rows = [
        ("600-frame clip", "clip_600"),
        (f"{args.long}-frame clip", long_name),
        ("ratio long / short", ("clip_600", long_name)),
        ("20 clips", "clips_20"),
        ("200 clips", "clips_200"),
        ("ratio 200 / 20", ("clips_20", "clips_200")),
    ]
    labels = list(results)
    print()
    print(f"| peak RSS (MiB) | {' | '.join(labels)} |")
    print("|---|" + "---:|" * len(labels))
    for title, key in rows:
        cells = []
        for label in labels:
            r = results[label]
            if isinstance(key, tuple):
                cells.append(f"{r[key[1]]['peak_mib'] / r[key[0]]['peak_mib']:.2f}x")
            else:
                cells.append(f"{r[key]['peak_mib']:.0f}")
        print(f"| {title} | {' | '.join(cells)} |")
    print("\n(goal: ratios <= 1.15)")
    shutil.rmtree(tmp, ignore_errors=True)  # the baseline copy, the builds, and the videos unless --data


if __name__ == "__main__":
    main()
