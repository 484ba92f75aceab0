"""Test scaffolding: tiny synthetic build folders (shards + manifest) for the trainer's tests and
``benchmarks/train_throughput.py``.

Not faces: each subject gets a smooth random texture, and each clip adds a local, class-specific
"action" (a Gaussian bump at one of K positions) that rises from the onset to the apex and fades by
the offset, plus sensor noise. Labels use the CASME II spelling (``happiness``, ``disgust``, ...) so
the ``casme2_5`` scheme applies when ``dataset="casme2"``. Written with the real
:class:`~mepipe.shards.writer.ShardWriter`, the build's own row mapping :func:`mepipe.process.ok_row`
and :func:`~mepipe.shards.manifest.write_manifest`, so the result is a regular (finished) build folder.

Example::

    write_toy_build(tmp / "micro", subjects=3, clips_per_subject=4, n_frames=12, size=64)
    write_toy_build(tmp / "macro", subjects=2, clips_per_subject=3, n_frames=40, size=64,
                    expression_type="macro", dataset="toymacro", amplitude=60.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mepipe.records import ClipRecord, ManifestRow
from mepipe.train.config import config_from_dict

TOY_CLASSES = ("happiness", "disgust", "repression", "surprise", "others")


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth ``(S, S, 3) float32`` texture in ``[40, 215]`` (bilinear upsampling of a coarse grid)."""
    coarse = rng.uniform(40, 215, size=(6, 6, 3)).astype(np.float32)
    ys = np.linspace(0, 5, size, dtype=np.float32)
    y0 = np.clip(ys.astype(int), 0, 4)
    fy = (ys - y0)[:, None, None]
    rows = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy  # (S, 6, 3)
    x0 = y0
    fx = (ys - x0)[None, :, None]
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def _bump(size: int, cls: int, n_classes: int) -> np.ndarray:
    """``(S, S, 1)`` Gaussian bump at class ``cls``'s position (K positions on a circle)."""
    ang = 2 * np.pi * cls / n_classes
    cy, cx = size / 2 + 0.28 * size * np.sin(ang), size / 2 + 0.28 * size * np.cos(ang)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sig = size / 10
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig * sig))[..., None]


def toy_clip_frames(
    rng: np.random.Generator,
    texture: np.ndarray,
    cls: int,
    n_classes: int,
    n_frames: int,
    onset: int,
    apex: int,
    offset: int,
    amplitude: float,
) -> np.ndarray:
    """``(T, S, S, 3) uint8`` frames: texture + bump scaled by a rise/fall profile + noise."""
    size = texture.shape[0]
    bump = _bump(size, cls, n_classes)
    t = np.arange(n_frames, dtype=np.float32)
    rise = np.clip((t - onset) / max(apex - onset, 1), 0, 1)
    fall = np.clip((offset - t) / max(offset - apex, 1), 0, 1)
    prof = np.where(t <= apex, rise, fall)
    frames = texture[None] + amplitude * prof[:, None, None, None] * bump[None]
    frames = frames + rng.normal(0, 1.5, size=frames.shape).astype(np.float32)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def write_toy_build(
    out: str | Path,
    *,
    subjects: int = 3,
    clips_per_subject: int = 4,
    n_frames: int = 12,
    size: int = 64,
    seed: int = 0,
    dataset: str = "casme2",
    expression_type: str = "micro",
    amplitude: float = 25.0,
    classes: Sequence[str] = TOY_CLASSES,
    max_clips: int = 8,
    jpeg_quality: int = 0,
    pipeline: str | None = None,
) -> Path:
    """Write a synthetic build folder ``out`` (``shards/`` + ``manifest.csv``).

    Args:
        out: folder to create.
        subjects, clips_per_subject: clip count = subjects x clips_per_subject; clip j of a subject has
            class ``(j + subject) % K``.
        n_frames: T per clip; onset at index 1, apex at ``T // 2``, offset at ``T - 2``.
        size: crop side S.
        seed: seeds textures and noise.
        dataset, expression_type: written into the clip records and manifest.
        amplitude: peak intensity of the action in grey levels (micro ~25, macro ~60+).
        classes: emotion strings used as ``emotion_raw``.
        max_clips: clips per shard (so that several shards are written).
        jpeg_quality: 0 stores raw frames; 1..100 stores JPEG frames (needs OpenCV).
        pipeline: a bundled pipeline name; its resolved config is written as the build's
            ``pipeline.resolved.yaml`` and its hash into the shards (as a real build does).

    Returns:
        ``out`` as a Path.
    """
    from mepipe.process import ok_row
    from mepipe.shards.format import ClipOutput
    from mepipe.shards.manifest import write_manifest
    from mepipe.shards.writer import ShardWriter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[ManifestRow] = []
    attrs: dict[str, str | int] = {
        "pipeline": f"toy-{dataset}",
        "config_hash": "toy",
        "crop_size": size,
        "align_mode": "clip",
        "backends": "{}",
        "model_files": "{}",
    }
    if pipeline is not None:
        from mepipe.config import load_config, write_resolved

        pcfg = load_config(pipeline)
        write_resolved(pcfg, out)
        attrs["pipeline"], attrs["config_hash"] = pcfg.name, pcfg.hash()
    if jpeg_quality:
        attrs["frame_encoding"] = "jpeg"
    writer = ShardWriter(out, attrs, max_clips=max_clips, max_bytes=2_000_000_000)
    onset, apex, offset = 1, n_frames // 2, n_frames - 2
    k = len(classes)
    for s in range(subjects):
        subject = f"sub{s + 1:02d}"
        texture = _texture(rng, size)
        for j in range(clips_per_subject):
            cls = (j + s) % k
            clip_id = f"{subject}/EP{j + 1:02d}_{classes[cls][:3]}"
            frames = toy_clip_frames(rng, texture, cls, k, n_frames, onset, apex, offset, amplitude)
            numbers = np.arange(10, 10 + n_frames, dtype=np.int64)
            rec = ClipRecord(
                dataset=dataset,
                subject=subject,
                clip_id=clip_id,
                source_kind="images",
                source_path=f"/toy/{clip_id}",
                frame_numbers=tuple(int(v) for v in numbers),
                onset=int(numbers[onset]),
                apex=int(numbers[apex]),
                offset=int(numbers[offset]),
                emotion_raw=classes[cls],
                fps=200.0,
                expression_type=expression_type,
            )  # type: ignore[arg-type]
            kw: dict = {}
            if jpeg_quality:
                from mepipe.shards.format import encode_jpeg, jpeg_digest

                blobs = encode_jpeg(frames, jpeg_quality)
                kw = {"frames_jpeg": blobs, "frame_shape": (size, size, 3), "jpeg_quality": jpeg_quality}
                digest = jpeg_digest(blobs)
                stored = None
            else:
                digest = hashlib.sha256(frames.tobytes()).hexdigest()
                stored = frames
            co = ClipOutput(
                clip=rec,
                frames=stored,
                frame_numbers=numbers,
                transforms=np.eye(2, 3),
                landmarks_ref=np.zeros((68, 2), np.float32),
                reference_idx=onset,
                face_box=np.array([0, 0, size, size], np.float64),
                faces_found=1,
                face_note="toy",
                onset_idx=onset,
                apex_idx=apex,
                offset_idx=offset,
                keyframe_source="annotated",
                source_files=[],
                source_sha256=[],
                frames_sha256=digest,
                **kw,
            )  # type: ignore[arg-type]
            shard = writer.add(co)
            rows.append(ok_row(co, shard))
    writer.close()
    write_manifest(rows, out)
    return out


TINY_OVERRIDES: dict[str, object] = {
    "model.input_size": 32,
    "model.width": 4,
    "model.pos_heads": 2,
    "data.batch_size": 4,
    "data.pairs_per_clip": 4,
    "optim.epochs": 2,
    "run.pictures": 0,
    "run.device": "cpu",
    "ma2mi.pixel_size": 8,
    "run.cpu_threads": 1,
}
"""Overrides giving a model and schedule small enough for unit tests (32 px, width 4, 2 epochs)."""


def tiny_config(kind: str, shards: str | Path, out: str | Path, **overrides: object):
    """A validated ``pretrain`` / ``finetune`` config for tests and smoke runs on a toy build.

    ``overrides`` use dotted keys with ``__`` for the dot (``optim__epochs=3``) on top of
    :data:`TINY_OVERRIDES`.
    """
    over = {k: v for k, v in TINY_OVERRIDES.items() if kind == "pretrain" or not k.startswith("ma2mi.")}
    over.update({"data.shards": str(shards), "run.out": str(out)})
    over.update({k.replace("__", "."): v for k, v in overrides.items()})
    return config_from_dict(kind, overrides=over)  # type: ignore[arg-type]


def runtime(cfg):
    """The runtime of a config (``run.device`` etc.)."""
    from mepipe.train.runtime import make_runtime

    return make_runtime(cfg.run.device, cfg.run.amp, cfg.run.channels_last)


def fit_fold(cfg, plan, *, num_classes: int, size: int, checkpoint: Path | None = None, rt=None, **kw):
    """:func:`mepipe.train.finetune.fit` on a :class:`~mepipe.train.protocol.FoldPlan` with a config's values."""
    from mepipe.train.engine import loop_settings
    from mepipe.train.finetune import fit

    return fit(
        plan.train,
        plan.val,
        model=cfg.model,
        loop=loop_settings(cfg),
        jitter=cfg.data.jitter,
        seed=cfg.run.seed,
        num_classes=num_classes,
        size=size,
        rt=rt or runtime(cfg),
        fold=plan.name,
        checkpoint=checkpoint,
        **kw,
    )
