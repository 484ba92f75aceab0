"""``mepipe predict``: run a trained model on a video, a frame folder, or every clip of a build.

The model is ``RUN/model.pt`` of ``mepipe train finetune --protocol all`` (:mod:`mepipe.train.deploy`); it
records the label scheme's class names and the build's resolved pipeline, so a new clip goes through
the face stage exactly as the training clips did.

One clip (:func:`predict_clip`): the input (a video file, or a folder of frame images named with their
frame numbers) becomes a :class:`~mepipe.records.ClipRecord` (the same helpers as the ``folder``
adapter), :func:`mepipe.process.process_clip` runs the face stage and keyframes with the model's
pipeline, keyframes switched to ``estimate`` (from facial motion) unless ``onset``/``apex`` are given
(source frame numbers: file-name numbers for frame folders, 0-based decoded indices for videos;
what is not given is estimated), and the model scores the onset/apex pair (an onset equal to the apex
is moved as in training: :func:`mepipe.train.data.keyframe_pairs`). A clip the face stage rejects
raises :class:`RejectedInput` naming the reason. :func:`write_prediction` writes ``DIR/prediction.json``
(probabilities, predicted class, keyframes and where they came from, face quality and ``qa`` flags,
model provenance) and ``DIR/heatmap.png`` (onset, apex, |apex - onset|, the model's heat map over the
apex).

A build (:func:`predict_build`): every ``ok`` clip on its stored onset/apex pair (no face stage), into
``DIR/predictions.csv``; a build whose crops were made with another crop size or alignment than the
model's is refused, naming the difference.

Nothing outside the input (or build) is read and nothing outside ``DIR`` is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mepipe.errors import ConfigError, MepipeError
from mepipe.records import ClipRecord

PREDICTION_NAME = "prediction.json"
HEATMAP_NAME = "heatmap.png"
PREDICTIONS_NAME = "predictions.csv"
ALIGN_KEYS = ("crop_size", "margin", "mode")


class RejectedInput(MepipeError):
    """The face stage (or the frame source) cannot make a clip of the input; ``reason`` is the code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def model_file(run: str | Path) -> Path:
    """``RUN/model.pt`` of a run folder, or ``run`` itself when it is a file.

    Raises:
        ConfigError: a run folder without ``model.pt`` (a LOSO run: per-fold checkpoints only), or a
            path that does not exist.
    """
    p = Path(run)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "model.pt").is_file():
            return p / "model.pt"
        what = "a LOSO/LODO run (per-fold checkpoints only)" if (p / "folds").is_dir() else "no model.pt"
        raise ConfigError(
            f"{p} holds {what}: predict needs one model trained on every subject; train it with "
            "`mepipe train finetune --protocol all --out RUN` (same settings) and pass RUN"
        )
    raise ConfigError(f"model {p} not found; pass RUN (a --protocol all run folder) or RUN/model.pt")


def _pipeline(trained: Any, estimate: bool):
    """The model's recorded pipeline, keyframes in ``estimate`` or ``annotated`` (given) mode."""
    from mepipe.config import parse_config

    if not trained.pipeline:
        raise ConfigError(
            "the model records no pipeline (its training build had no pipeline.resolved.yaml), so the "
            "face stage cannot be rebuilt; train on a build made by `mepipe build-dataset`"
        )
    data = json.loads(json.dumps(trained.pipeline))
    data.setdefault("keyframes", {})["mode"] = "estimate" if estimate else "annotated"
    cfg = parse_config(data, "the model's recorded pipeline")
    if cfg.align.crop_size != trained.crop_size:
        raise ConfigError(
            f"the model was trained on {trained.crop_size}-px crops but its recorded pipeline makes "
            f"{cfg.align.crop_size}-px crops; the model file is inconsistent, retrain it"
        )
    return cfg


def input_record(
    path: str | Path, *, onset: int | None = None, apex: int | None = None, fps: float | None = None
) -> ClipRecord:
    """The :class:`ClipRecord` of a video file or a frame folder (keyframes ``onset``/``apex`` as given).

    Raises:
        ConfigError: the path does not exist, is neither a video nor a folder, or ``onset > apex``.
        RejectedInput: a frame folder that cannot be listed (no frames, a file without a frame number,
            a given keyframe outside the frames on disk).
    """
    from mepipe.datasets.base import FrameLister, validate_image_clip
    from mepipe.datasets.macro import frames_record, video_record
    from mepipe.sources import VIDEO_SUFFIXES, is_video_file

    p = Path(path).absolute()
    if onset is not None and apex is not None and onset >= apex:
        raise ConfigError(f"--onset {onset} must come before --apex {apex} (source frame numbers)")
    kw = dict(emotion_raw="", extra={}, expression_type="micro")
    if p.is_file():
        if not is_video_file(p):
            raise ConfigError(
                f"{p} is not a video ({', '.join(VIDEO_SUFFIXES)}); give a video file or a folder of frames"
            )
        clip = video_record("input", p.stem, "input", p, fps=fps or 30.0, **kw)  # the container's fps wins
    elif p.is_dir():
        clip, issue = frames_record(
            "input", p.name, "input", p, lister=FrameLister((p,)), fps=fps or 30.0, **kw
        )
        if issue is None:
            numbers = set(clip.frame_numbers)
            for name, v in (("onset", onset), ("apex", apex)):
                if v is not None and v not in numbers:
                    lo, hi = clip.frame_numbers[0], clip.frame_numbers[-1]
                    raise ConfigError(
                        f"--{name} {v} is not a frame of {p} (its files are frames {lo}..{hi}, "
                        "numbered by their names); give a frame number present in the folder"
                    )
            issue = validate_image_clip(replace(clip, onset=onset, apex=apex), require_contiguous=False)
        if issue is not None:
            raise RejectedInput(issue.reason, f"{p}: {issue.message}")
    else:
        raise ConfigError(f"input {p} not found; give a video file or a folder of frame images")
    return replace(clip, onset=onset, apex=apex, keyframe_source="given")


@dataclass
class ClipPrediction:
    """The outcome of :func:`predict_clip` (see :meth:`as_dict` for ``prediction.json``).

    Attributes:
        input: the video or frame folder.
        classes, probabilities: class names and ``(K,)`` probabilities.
        keyframes: onset/apex/offset source frame numbers and indices, ``source`` (given / estimated),
            ``snr`` of the motion curve when estimated.
        face: face quality of the clip (score, fit error, stability, ``qa`` flags, notes).
        model: the model file, its sha256, scheme, model name and training provenance.
        onset_image, apex_image: the aligned ``(S, S, 3) uint8`` crops scored; heat: ``(h, w)`` in [0, 1].
    """

    input: Path
    classes: list[str]
    probabilities: np.ndarray
    keyframes: dict[str, Any]
    face: dict[str, Any]
    model: dict[str, Any]
    onset_image: np.ndarray
    apex_image: np.ndarray
    heat: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> str:
        return self.classes[int(np.argmax(self.probabilities))]

    def as_dict(self) -> dict[str, Any]:
        from mepipe import __version__
        from mepipe.provenance import library_versions

        return {
            "input": str(self.input),
            "predicted": self.predicted,
            "probabilities": {
                c: round(float(p), 6) for c, p in zip(self.classes, self.probabilities, strict=True)
            },
            "keyframes": self.keyframes,
            "face": self.face,
            "notes": self.notes,
            "model": self.model,
            "mepipe_version": __version__,
            "versions": library_versions(),
        }

    def lines(self) -> list[str]:
        """The console report: keyframes and where they came from, face quality, probabilities."""
        k, f = self.keyframes, self.face
        where = k["source"] + (f" (motion snr {k['snr']:.1f})" if k.get("snr") is not None else "")
        out = [
            f"input {self.input}: {k['n_frames']} frames with the face",
            f"onset {k['onset']}, apex {k['apex']} (source frame numbers; {where})",
            f"face: score {f['face_score']:.2f}, fit error {f['fit_error']:.1f} % IOD, stability "
            f"{f['stability']:.2f} % IOD, qa {f['qa'] or 'clean'}",
        ]
        out += [f"note: {n}" for n in self.notes]
        width = max(len(c) for c in self.classes)
        for c, p in sorted(zip(self.classes, self.probabilities, strict=True), key=lambda t: -t[1]):
            out.append(f"  {c:<{width}}  {p:6.3f}  {'#' * int(round(30 * p))}")
        out.append(f"predicted: {self.predicted} (p={float(np.max(self.probabilities)):.3f})")
        return out


def _frames_of(out: Any) -> np.ndarray:
    """``(T, S, S, 3) uint8`` crops of a ``ClipOutput`` (raw, or its JPEGs decoded as the shards would)."""
    if out.frames is not None:
        return out.frames
    from mepipe.shards.reader import decode_jpeg

    return np.stack([decode_jpeg(np.frombuffer(b, np.uint8), out.frame_shape) for b in out.frames_jpeg])


def _model_info(path: Path, trained: Any) -> dict[str, Any]:
    from mepipe.provenance import file_sha256

    return {
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "model": trained.model_config.name,
        "scheme": trained.scheme,
        "classes": list(trained.classes),
        "crop_size": trained.crop_size,
        "input_size": trained.input_size,
        "flow_input": trained.flow_input.to_dict() if trained.flow_input is not None else None,
        "pipeline": trained.pipeline.get("name", ""),
        "training": trained.provenance,
    }


def predict_clip(
    run: str | Path,
    input_path: str | Path,
    *,
    onset: int | None = None,
    apex: int | None = None,
    fps: float | None = None,
    device: str = "cpu",
) -> ClipPrediction:
    """Score one video or frame folder with a trained model (see the module docstring).

    Args:
        run: a ``--protocol all`` run folder or its ``model.pt``.
        input_path: a video file or a folder of frame images.
        onset, apex: keyframes in source frame numbers (``None``: estimated from facial motion).
        fps: frame rate of a frame folder (keyframe smoothing is in ms; default 30); videos use their own.
        device: where the model runs (``cpu``, ``cuda``, ``auto``).

    Raises:
        ConfigError: bad model, input path or keyframes; RejectedInput: the face stage rejected the clip.
    """
    import torch

    from mepipe.process import process_clip
    from mepipe.records import ClipIssue
    from mepipe.train.data import keyframe_pairs
    from mepipe.train.deploy import load_model
    from mepipe.train.frames import ClipInfo
    from mepipe.train.runtime import make_runtime

    path = model_file(run)
    trained = load_model(path, make_runtime(device).device)
    given = onset is not None or apex is not None
    cfg = _pipeline(trained, estimate=not given)
    clip = input_record(input_path, onset=onset, apex=apex, fps=fps)
    out = process_clip(clip, cfg)
    if isinstance(out, ClipIssue):
        raise RejectedInput(out.reason, f"cannot predict {clip.source_path}: {out.reason}: {out.message}")
    frames = _frames_of(out)
    info = ClipInfo(clip.key, "", clip.dataset, clip.subject, len(frames), out.onset_idx, out.apex_idx)
    _, i0, i1 = keyframe_pairs([info], 0, None)[0]
    probs, heat = trained.explain(torch.from_numpy(np.stack([frames[i0], frames[i1]])[None]))
    numbers = np.asarray(out.frame_numbers)
    snr = out.extra_attrs.get("keyframe_snr")
    keyframes = {
        "onset": int(numbers[i0]),
        "apex": int(numbers[i1]),
        "offset": int(numbers[out.offset_idx]),
        "onset_idx": int(i0),
        "apex_idx": int(i1),
        "offset_idx": int(out.offset_idx),
        "n_frames": len(frames),
        "source": out.keyframe_source,
        "snr": float(snr) if snr is not None and snr >= 0 else None,
    }
    if (i0, i1) != (out.onset_idx, out.apex_idx):
        keyframes["source"] += (
            f"; the onset equalled the apex (frame {int(numbers[out.onset_idx])}), pair moved"
        )
    a = out.extra_attrs
    face = {
        "face_score": float(a.get("face_score", -1.0)),
        "fit_error": float(a.get("fit_error", -1.0)),
        "stability": float(a.get("stability", -1.0)),
        "qa": str(a.get("qa", "")),
        "face_span": str(a.get("face_span", "")),
        "referee": float(a.get("face_referee", -1.0)),
        "faces_found": int(out.faces_found),
        "face_note": out.face_note,
        "reference_frame": int(numbers[out.reference_idx]),
    }
    return ClipPrediction(
        Path(clip.source_path),
        list(trained.classes),
        probs[0].double().numpy(),
        keyframes,
        face,
        _model_info(path, trained),
        frames[i0],
        frames[i1],
        heat[0].numpy(),
        [n for n in out.notes.split("; ") if n],
    )


def write_prediction(pred: ClipPrediction, out: str | Path) -> tuple[Path, Path | None]:
    """Write ``OUT/prediction.json`` and ``OUT/heatmap.png`` (each atomically); returns their paths
    (the PNG is ``None`` without OpenCV)."""
    from mepipe.train.outputs import write_json
    from mepipe.train.pictures import heatmap_grid

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; give a folder")
    js = write_json(folder / PREDICTION_NAME, pred.as_dict())
    k = pred.keyframes
    p = float(np.max(pred.probabilities))
    sample = {
        "onset": pred.onset_image,
        "apex": pred.apex_image,
        "heat": pred.heat,
        "title": f"{pred.input.name}: onset {k['onset']}, apex {k['apex']} ({k['source'].split(';')[0]})",
        "subtitle": f"predicted {pred.predicted} (p={p:.2f}), model {pred.model['model']} / {pred.model['scheme']}",
    }
    tmp = folder / (HEATMAP_NAME + ".tmp.png")
    png = heatmap_grid([sample], tmp, over="apex")
    if png is not None:
        png = tmp.replace(folder / HEATMAP_NAME)
    return js, png


def build_differences(trained: Any, build_dir: str | Path) -> dict[str, tuple[Any, Any]]:
    """How a build's crops differ from the model's (``{key: (build, model)}``): the crop side of the
    stored frames, and the ``align`` settings of the two resolved pipelines (``smoothing`` only for the
    modes that use it)."""
    import yaml

    from mepipe.shards.manifest import require_complete
    from mepipe.train.frames import clips_from_rows, frame_size

    rows = require_complete(build_dir)
    clips, _ = clips_from_rows(rows, build_dir)
    diffs: dict[str, tuple[Any, Any]] = {}
    if clips:
        side = frame_size(clips)
        if side != trained.crop_size:
            diffs["crop side of the stored frames"] = (side, trained.crop_size)
    resolved = Path(build_dir) / "pipeline.resolved.yaml"
    mine = (trained.pipeline or {}).get("align") or {}
    if resolved.is_file() and mine:
        theirs = (yaml.safe_load(resolved.read_text()) or {}).get("align") or {}
        keys = list(ALIGN_KEYS) + (
            ["smoothing"] if "clip" not in (theirs.get("mode"), mine.get("mode")) else []
        )
        for key in keys:
            if theirs.get(key) != mine.get(key):
                diffs[f"align.{key}"] = (theirs.get(key), mine.get(key))
    return diffs


@dataclass
class BuildPredictions:
    """The outcome of :func:`predict_build`: one row per ok clip, the class names, the CSV written."""

    rows: list[dict[str, Any]]
    classes: list[str]
    path: Path | None


def predict_build(
    run: str | Path,
    build_dir: str | Path,
    *,
    out: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 32,
) -> BuildPredictions:
    """Score every ``ok`` clip of a finished build on its stored onset/apex pair.

    Rows: ``key, dataset, subject, clip_id, onset, apex, onset_idx, apex_idx, keyframe_source, qa,
    label_name`` (the clip's class under the model's scheme, empty when the scheme does not label it),
    ``pred, pred_name, p_<class>``. With ``out`` they are written to ``OUT/predictions.csv`` with
    ``OUT/predict-info.json`` (model and build provenance).

    Raises:
        ConfigError: the build's crops differ from the model's (crop size, alignment), naming each
            difference; ShardError: unfinished build.
    """
    from mepipe.labels import load_scheme
    from mepipe.provenance import file_sha256
    from mepipe.shards.manifest import require_complete
    from mepipe.train.deploy import load_model
    from mepipe.train.evaluate import predict
    from mepipe.train.frames import clips_from_rows
    from mepipe.train.outputs import write_csv, write_json
    from mepipe.train.runtime import make_runtime

    path = model_file(run)
    rt = make_runtime(device)
    trained = load_model(path, rt.device)
    diffs = build_differences(trained, build_dir)
    if diffs:
        text = ", ".join(f"{k}: build {a!r}, model {b!r}" for k, a, b in ((k, *v) for k, v in diffs.items()))
        raise ConfigError(
            f"{build_dir} was not made like the model's training crops ({text}); rebuild it with the "
            "model's pipeline (recorded in model.pt and its run's build) or use a matching model"
        )
    rows = [r for r in require_complete(build_dir) if r.status == "ok"]
    clips, _ = clips_from_rows(rows, build_dir)
    classes = list(trained.classes)
    try:
        scheme = load_scheme(trained.scheme)
    except ConfigError:
        scheme = None
    probs = (
        predict(
            trained.model,
            clips,
            size=trained.crop_size,
            input_size=trained.input_size,
            batch_size=batch_size,
            rt=rt,
        )
        if clips
        else np.zeros((0, len(classes)))
    )
    out_rows = []
    for r, p in zip(rows, probs, strict=True):
        k = scheme.label(r.dataset, r.emotion_raw) if scheme is not None else None
        pred = int(np.argmax(p))
        row: dict[str, Any] = {
            "key": r.key,
            "dataset": r.dataset,
            "subject": r.subject,
            "clip_id": r.clip_id,
            "onset": r.onset,
            "apex": r.apex,
            "onset_idx": r.onset_idx,
            "apex_idx": r.apex_idx,
            "keyframe_source": r.keyframe_source,
            "qa": r.qa,
            "label_name": classes[k] if k is not None and 0 <= k < len(classes) else "",
            "pred": pred,
            "pred_name": classes[pred],
        }
        row.update({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)})
        out_rows.append(row)
    csv_path = None
    if out is not None:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file; give a folder")
        csv_path = write_csv(folder / PREDICTIONS_NAME, out_rows)
        write_json(
            folder / "predict-info.json",
            {
                "build": str(Path(build_dir).resolve()),
                "manifest_sha256": file_sha256(Path(build_dir) / "manifest.csv"),
                "clips": len(out_rows),
                "model": _model_info(path, trained),
            },
        )
    return BuildPredictions(out_rows, classes, csv_path)
