"""``synthesize()``: write a deterministic synthetic dataset in a native layout, with ground truth."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import mepipe
from mepipe.errors import ConfigError, MepipeError
from mepipe.synth import truth
from mepipe.synth.conditions import CONDITIONS, make_condition
from mepipe.synth.expressions import AMPLITUDE_IOD, EXPRESSION_SETS, au_fields, intensity_profile
from mepipe.synth.faces import Subject, load_base_faces, make_subject, sample_subject_params
from mepipe.synth.layouts import LAYOUTS, ClipPlan, LayoutWriter
from mepipe.synth.layouts.base import JPEG_QUALITY
from mepipe.synth.render import ClipRenderer, sample_nuisance

GENERATOR_VERSION = "1.0.0"
"""Bumped whenever the same seed would produce different pixels or annotations."""

_STREAM_SUBJECT, _STREAM_PLAN, _STREAM_CLIP, _STREAM_CONDITION = 11, 12, 13, 14
UNFINISHED_FILE = ".synth-unfinished"
"""Written (holding the layout's name) before the first clip and removed after the ground truth: a run
that was killed or failed leaves it, and the next run into the folder replaces that run's files."""


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote.

    Attributes:
        out: the dataset root.
        layout: layout name.
        n_subjects, n_clips, n_frames: counts written.
        ground_truth: path of ``synth_ground_truth.json``.
        annotation_files: the coding sheets / split files written.
        seconds: wall time.
    """

    out: Path
    layout: str
    n_subjects: int
    n_clips: int
    n_frames: int
    ground_truth: Path
    annotation_files: tuple[Path, ...]
    seconds: float


def synthesize(
    layout: str,
    out: Path,
    *,
    subjects: int = 3,
    clips_per_subject: int = 4,
    seed: int = 0,
    amplitude: str | None = None,
    faces_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    conditions: tuple[str, ...] | list[str] = (),
    clip_frames: tuple[int, int] | None = None,
    expressions: str = "canonical",
    workers: int = 1,
) -> SynthSummary:
    """Generate a synthetic dataset in the on-disk layout of ``layout`` under ``out``.

    Every subject is a morphed, re-coloured variant of a real photograph (the scikit-image astronaut,
    or the portraits in ``faces_dir``); every clip renders one emotion as a fixed set of action-unit
    displacement fields with a raised-cosine onset -> apex -> offset profile, plus smooth head motion,
    illumination drift, sensor noise and the layout's compression. The same arguments always give
    byte-identical frames and annotation files.

    Args:
        layout: a name in :data:`LAYOUTS` (``casme2``, ``samm``, ``smic``, ``dfew``).
        out: dataset root; must be empty, absent, or a previous synthetic dataset of the same layout
            (whose files are then replaced).
        subjects: number of subjects (>= 1).
        clips_per_subject: clips per subject (>= 1).
        seed: master seed; subject appearance depends only on ``(seed, subject index)``.
        amplitude: ``"micro"`` or ``"macro"``; default: the layout's (micro except ``dfew``).
        faces_dir: optional folder of one-face portraits used instead of the astronaut.
        progress: called as ``progress(clips_done, clips_total)`` after each clip.
        conditions: hard cases (:data:`mepipe.synth.conditions.CONDITIONS`); clip ``i`` gets
            ``conditions[i % len(conditions)]``, recorded in its ground truth (``condition``). Empty: none
            (and the files are exactly those of a run without the argument).
        clip_frames: ``(min, max)`` frames per clip, both included (default: the layout's
            ``default_clip_frames``, e.g. 40-70 for CASME II); e.g. long clips for throughput benchmarks.
        expressions: ``"canonical"`` (one or two AU combinations per class) or ``"varied"`` (several
            combinations per class, shared AUs between classes, a wider range of intensities; casme2
            and dfew layouts), see :data:`mepipe.synth.expressions.EXPRESSION_SETS`. ``canonical``
            gives exactly the files of a run without the argument.
        workers: clips rendered in this many worker processes (1: in this process). Every clip draws
            from its own random streams, so the files are byte-identical for any ``workers``.

    Returns:
        A :class:`SynthSummary`; the ground truth is described in :mod:`mepipe.synth.truth`.

    Raises:
        MepipeError: bad arguments, a non-empty foreign ``out``, or unusable portraits.
    """
    t0 = time.perf_counter()
    writer_cls = LAYOUTS.get(layout)
    if subjects < 1 or clips_per_subject < 1:
        raise MepipeError(f"subjects ({subjects}) and clips_per_subject ({clips_per_subject}) must be >= 1")
    if workers < 1:
        raise MepipeError(f"workers ({workers}) must be >= 1")
    check_clip_frames(clip_frames)
    amp = amplitude or writer_cls.default_amplitude
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise MepipeError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    if amp not in AMPLITUDE_IOD:
        raise MepipeError(f"amplitude {amplitude!r} is not one of {sorted(AMPLITUDE_IOD)}")
    out = Path(out).expanduser()
    writer = writer_cls(out, clip_frames, expressions)
    _prepare_out(out, writer_cls)
    code = zlib.crc32(layout.encode())

    bases = load_base_faces(faces_dir)
    people = []
    for k in range(subjects):
        params = sample_subject_params(np.random.default_rng([seed, _STREAM_SUBJECT, k]), len(bases), k)
        people.append(make_subject(bases[params.base_index], params, writer.canvas, writer.face_width_px))
    plans = writer.plan(subjects, clips_per_subject, np.random.default_rng([seed, _STREAM_PLAN, code]))

    jobs = []
    for i, plan in enumerate(plans):
        person = people[plan.subject_index]
        cond = None
        if conditions:  # the hard case's second face: the next base photograph
            base = bases[(person.params.base_index + 1) % len(bases)]
            cond = (conditions[i % len(conditions)], base.image, base.landmarks)
        jobs.append(_ClipJob(writer, person, plan, amp, seed, code, i, cond))
    clip_docs = _render_clips(jobs, workers, progress)
    n_frames = sum(len(plan.frame_numbers) for plan in plans)
    annotation_files = writer.finish(plans)

    doc = {
        "schema": truth.SCHEMA,
        "schema_version": truth.SCHEMA_VERSION,
        "generator": {
            "name": "mepipe.synth",
            "version": GENERATOR_VERSION,
            "mepipe_version": mepipe.__version__,
        },
        "layout": layout,
        "seed": seed,
        "params": {
            "subjects": subjects,
            "clips_per_subject": clips_per_subject,
            "amplitude": amp,
            "amplitude_iod": AMPLITUDE_IOD[amp],
            "faces_dir": str(faces_dir) if faces_dir else None,
            **({"conditions": list(conditions)} if conditions else {}),
            **({"expressions": expressions} if expressions != "canonical" else {}),
            "fps": writer.fps,
            "frame_size": list(writer.canvas),
            "grayscale": writer.grayscale,
            "jpeg_quality": JPEG_QUALITY if writer.uses_jpeg else None,
            "frame_convention": writer.frame_convention,
            "coordinates": "pixels of the written frame; pixel centres on integers; x right, y down",
            "head_pose_model": "P(q) = c + scale * R(rot_deg) (q - c) + (tx, ty); rot_deg counter-clockwise "
            "as displayed (cv2.getRotationMatrix2D); c = head_pose.centre (canvas px)",
        },
        "annotation_files": [p.relative_to(out).as_posix() for p in annotation_files],
        "written_roots": list(writer.roots),
        "subjects": [_subject_doc(writer, k, s) for k, s in enumerate(people)],
        "clips": clip_docs,
    }
    gt_path = out / truth.GROUND_TRUTH_FILE
    truth.write_ground_truth(gt_path, doc)
    (out / UNFINISHED_FILE).unlink()
    return SynthSummary(
        out=out,
        layout=layout,
        n_subjects=subjects,
        n_clips=len(plans),
        n_frames=n_frames,
        ground_truth=gt_path,
        annotation_files=tuple(annotation_files),
        seconds=time.perf_counter() - t0,
    )


def check_clip_frames(clip_frames: tuple[int, int] | None) -> None:
    """Raise :class:`ConfigError` unless ``clip_frames`` is ``None`` or ``(min, max)`` with
    ``8 <= min <= max`` (the shortest clip a layout's onset/apex/offset plan fits)."""
    if clip_frames is not None and not 8 <= clip_frames[0] <= clip_frames[1]:
        raise ConfigError(
            f"clip_frames {clip_frames} must be (min, max) with 8 <= min <= max, e.g. (150, 300)"
        )


def _prepare_out(out: Path, writer_cls: type[LayoutWriter]) -> None:
    """Create ``out``, or clear the files of a previous synthetic run of the same layout, finished or
    not (:data:`UNFINISHED_FILE`); mark ``out`` unfinished until the ground truth is written."""
    if out.exists() and not out.is_dir():
        raise MepipeError(f"{out} exists and is not a folder; choose a folder path for --out")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        (out / UNFINISHED_FILE).write_text(writer_cls.name)
        return
    gt = out / truth.GROUND_TRUTH_FILE
    unfinished = out / UNFINISHED_FILE
    if not gt.is_file() and unfinished.is_file() and unfinished.read_text() == writer_cls.name:
        _remove(out, writer_cls.roots)  # an earlier run of this layout that stopped before its ground truth
        return
    if not gt.is_file():
        raise MepipeError(
            f"{out} is not empty and holds no {truth.GROUND_TRUTH_FILE}; choose an empty or new folder"
        )
    try:
        old = truth.read_ground_truth(gt)
    except (ValueError, OSError) as exc:
        raise MepipeError(f"{gt} is unreadable ({exc}); delete {out} or choose another folder") from exc
    if old.get("layout") != writer_cls.name:
        raise MepipeError(
            f"{out} holds a synthetic {old.get('layout')!r} dataset; write {writer_cls.name!r} to another folder"
        )
    _remove(out, {*old.get("written_roots", []), *writer_cls.roots})
    gt.unlink()
    unfinished.write_text(writer_cls.name)


def _remove(out: Path, names: Iterable[str]) -> None:
    """Delete the files and folders ``names`` under ``out`` (those a synthetic run writes)."""
    for name in names:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def _subject_doc(writer: LayoutWriter, index: int, subject: Subject) -> dict[str, Any]:
    return {
        "index": index,
        "subject": writer.subject_id(index),
        "folder": writer.subject_folder(index),
        "base_face": subject.base_name,
        "appearance": subject.params.to_dict(),
        "iod_px": round(subject.iod, 4),
        "landmarks_neutral": truth.points(subject.landmarks),
    }


@dataclass(frozen=True)
class _ClipJob:
    """Everything one clip's rendering needs, picklable for a worker process. ``condition``: the hard
    case's name and the other base photograph + its landmarks, or ``None``."""

    writer: LayoutWriter
    subject: Subject
    plan: ClipPlan
    amplitude: str
    seed: int
    layout_code: int
    index: int
    condition: tuple[str, np.ndarray, np.ndarray] | None

    def run(self) -> dict[str, Any]:
        """Render the clip from its own random streams (``(seed, stream, layout, subject, clip)``)."""
        key = (self.layout_code, self.plan.subject_index, self.plan.clip_index)
        rng = np.random.default_rng([self.seed, _STREAM_CLIP, *key])
        cond = None
        if self.condition is not None:
            name, image, landmarks = self.condition
            cond = (name, np.random.default_rng([self.seed, _STREAM_CONDITION, *key]), (image, landmarks))
        return _render_clip(self.writer, self.subject, self.plan, self.amplitude, rng, self.index, cond)


def _render_clips(
    jobs: list[_ClipJob], workers: int, progress: Callable[[int, int], None] | None
) -> list[dict[str, Any]]:
    """Render every job, in this process or in ``workers`` worker processes (``spawn``; each dies with
    this process); returns the clips' ground-truth records in job order. The first failing clip's error
    is raised once the clips already running have finished; no further clip is started."""
    docs: dict[int, dict[str, Any]] = {}

    def done(job: _ClipJob, doc: dict[str, Any]) -> None:
        docs[job.index] = doc
        if progress is not None:
            progress(len(docs), len(jobs))

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            done(job, job.run())
    else:
        from mepipe.engine.backends import worker_init

        with cf.ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
            initializer=worker_init, initargs=(os.getpid(),),
        ) as pool:  # fmt: skip
            futures = {pool.submit(job.run): job for job in jobs}
            try:
                for fut in cf.as_completed(futures):
                    done(futures[fut], fut.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [docs[job.index] for job in jobs]


def _render_clip(
    writer: LayoutWriter,
    subject: Subject,
    plan: ClipPlan,
    amplitude: str,
    rng: np.random.Generator,
    index: int,
    condition: tuple[str, np.random.Generator, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Render one clip into the writer's sink; return its ground-truth record.

    ``condition``: ``(name, random stream, base photograph + landmarks)`` of a hard case, or ``None``.
    """
    frames = np.asarray(plan.frame_numbers)
    scale_px = (
        AMPLITUDE_IOD[amplitude] * subject.iod * float(rng.uniform(*EXPRESSION_SETS[writer.expressions]))
    )
    fields = au_fields(plan.aus, subject.landmarks, scale_px)
    intensity = intensity_profile(frames, plan.onset, plan.apex, plan.offset)
    nuisance = sample_nuisance(rng, len(frames), amplitude)
    cond = None
    if condition is not None:
        name, crng, photo = condition
        jaw = float(np.linalg.norm(subject.landmarks[16] - subject.landmarks[0]))
        cond = make_condition(name, crng, len(frames), writer.canvas, subject.centre, jaw, photo)
    renderer = ClipRenderer(
        subject,
        fields,
        intensity,
        nuisance,
        rng,
        grayscale=writer.grayscale,
        placement=cond.placement if cond is not None else None,
        backdrop=cond.backdrop if cond is not None else None,
    )
    sink = writer.open_clip(plan)
    try:
        for t, number in enumerate(plan.frame_numbers):
            img = renderer.frame(t)
            sink.write(number, cond.apply(t, img, condition[1]) if cond is not None and condition else img)
    finally:
        sink.close()
    t_on, t_ap = plan.frame_numbers.index(plan.onset), plan.frame_numbers.index(plan.apex)
    anchors = []
    for spec, f in zip(plan.aus, fields, strict=True):
        mapped = renderer.to_frame(t_on, f.centers)
        s = float(nuisance.scale[t_on])
        anchors += [
            {
                "au": spec.code(),
                "x": round(float(x), 3),
                "y": round(float(y), 3),
                "sigma_px": round(float(sg) * s, 3),
            }
            for (x, y), sg in zip(mapped, f.sigmas, strict=True)
        ]
    return {
        "index": index,
        "subject_index": plan.subject_index,
        "clip_index": plan.clip_index,
        "subject": plan.native["subject"],
        "clip_id": plan.native["clip_id"],
        "native": plan.native,
        "path": sink.path,
        "label": plan.label,
        "emotion": plan.emotion,
        "aus": [a.code() for a in plan.aus],
        "aus_written": "+".join(a.code() for a in plan.aus),
        "onset": plan.onset,
        "apex": plan.apex,
        "offset": plan.offset,
        "written": plan.written,
        "first_frame": plan.frame_numbers[0],
        "last_frame": plan.frame_numbers[-1],
        "n_frames": len(plan.frame_numbers),
        "amplitude": amplitude,
        "amplitude_px_per_unit": round(scale_px, 4),
        "peak_displacement_px": round(renderer.peak_displacement(), 4),
        "intensity": truth.series(intensity),
        "head_pose": {
            "centre": [round(float(v), 4) for v in subject.centre],
            "trajectory": {k: v for k, v in nuisance.trajectory.items() if k != "gain"},
            "tx": truth.series(nuisance.tx),
            "ty": truth.series(nuisance.ty),
            "rot_deg": truth.series(nuisance.rot_deg),
            "scale": truth.series(nuisance.scale, 6),
        },
        "matrix_onset": [[round(float(v), 6) for v in row] for row in renderer.pose(t_on)],
        "gain": truth.series(nuisance.gain),
        "gain_trajectory": nuisance.trajectory["gain"],
        "noise_sigma": round(nuisance.noise_sigma, 4),
        "landmarks_onset": truth.points(renderer.landmarks(t_on)),
        "landmarks_apex": truth.points(renderer.landmarks(t_ap)),
        "landmarks_first": truth.points(renderer.landmarks(0)),
        "au_anchors_onset": anchors,
        **({"condition": cond.truth(list(plan.frame_numbers))} if cond is not None else {}),
    }
