"""Synthetic data generation: one process vs ``workers`` processes, the same clips, the same bytes.

``mepipe.synth.synthesize`` renders every clip from its own random streams, so ``workers=N`` writes
exactly the files of ``workers=1`` (tested in ``tests/test_synth.py``). This script times both on the
same arguments (default: the DFEW layout at the transfer experiment's macro size, 24 subjects x 16
clips of mp4 video, and the demo's CASME II micro set), each into a fresh folder, checks that the two
folders hold identical files, and prints wall-clock seconds, clips/s, CPU-seconds (this process and
its worker processes, from getrusage) and the speed-up, with the load average: a busy machine gives
the workers fewer cores than they ask for, so compare the ratio printed in one run.

Usage: python benchmarks/synth_scaling.py [--workers 2] [--sets dfew:24x16 casme2:5x8] [--seed 0]
       [--expressions varied] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from mepipe.synth import synthesize


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _parse_set(text: str) -> tuple[str, int, int]:
    layout, _, size = text.partition(":")
    subjects, _, clips = size.partition("x")
    return layout, int(subjects), int(clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sets", nargs="+", default=["dfew:24x16", "casme2:5x8"], metavar="LAYOUT:SxC")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--expressions", default="varied")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synth-scaling-", dir=args.workdir))
    print(f"{'set':<14}{'workers':>8}{'clips':>7}{'frames':>8}{'seconds':>9}{'clips/s':>9}{'CPU s':>8}"
          f"{'speed-up':>10}{'load':>7}")  # fmt: skip
    try:
        for spec in args.sets:
            layout, subjects, clips = _parse_set(spec)
            rows = {}
            for workers in (1, args.workers):
                out = work / f"{layout}-{workers}"
                cpu, t = _cpu_seconds(), time.perf_counter()
                s = synthesize(layout, out, subjects=subjects, clips_per_subject=clips, seed=args.seed,
                               expressions=args.expressions, workers=workers)  # fmt: skip
                rows[workers] = (s, time.perf_counter() - t, _cpu_seconds() - cpu)
            same = _digest(rows[1][0].out) == _digest(rows[args.workers][0].out)
            for workers, (s, sec, cpu) in rows.items():
                speed = rows[1][1] / sec
                print(f"{spec:<14}{workers:>8}{s.n_clips:>7}{s.n_frames:>8}{sec:>9.1f}{s.n_clips / sec:>9.2f}"
                      f"{cpu:>8.1f}{speed:>9.2f}x{os.getloadavg()[0]:>7.1f}")  # fmt: skip
            print(f"{'':<14}identical files: {'yes' if same else 'NO'}")
            for workers in rows:
                shutil.rmtree(work / f"{layout}-{workers}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
