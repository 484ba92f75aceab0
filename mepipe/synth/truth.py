"""The ground-truth file written beside every synthetic dataset: ``OUT/synth_ground_truth.json``.

Schema (``schema_version`` 1). Coordinates are pixels of the *written* frame, ``(x, y)`` with pixel
centres on integers, x right, y down. Frame numbers follow ``params.frame_convention``: the numbers
in the frame file names for image layouts (``img46.jpg`` is frame 46), 0-based decoded-frame indices
for video layouts (DFEW).

.. code-block:: text

    {
      "schema": "mepipe.synth/ground-truth", "schema_version": 1,
      "generator": {"name": "mepipe.synth", "version": str, "mepipe_version": str},
      "layout": "casme2" | "samm" | "smic" | "dfew",
      "seed": int,
      "params": {
        "subjects": int, "clips_per_subject": int, "amplitude": "micro" | "macro",
        "amplitude_iod": float,          # px moved by a unit AU vector / inter-ocular distance
        "faces_dir": str | null, "fps": float, "frame_size": [W, H], "grayscale": bool,
        "jpeg_quality": int | null, "frame_convention": str, "coordinates": str,
        "head_pose_model": str           # P(q) = c + s R(theta) (q - c) + (tx, ty), see render.py
      },
      "annotation_files": [str],         # relative to OUT (coding sheets, split csvs)
      "subjects": [{
        "index": int,                    # 0-based generator index
        "subject": int | str,            # as the dataset writes it (1, 6, "s1")
        "folder": str | null,            # the subject's folder, relative to OUT (null for DFEW)
        "base_face": str, "appearance": {...},   # SubjectParams
        "iod_px": float,
        "landmarks_neutral": [[x, y] x 68]   # canvas coordinates, before head pose and expression
      }],
      "clips": [{
        "index": int, "subject_index": int, "clip_index": int,
        "subject": int | str, "clip_id": str,    # "sub01/EP02_01f", "006/006_1_2", "s1/s1_ne_01", "00001"
        "native": {...},                 # every native id as written (filename, path, pattern, split...)
        "path": str,                     # frame folder or video file, relative to OUT
        "label": str,                    # class as written (DFEW: "1".."7")
        "emotion": str,                  # readable class name
        "aus": [str], "aus_written": str,        # ["6", "R12"], "6+R12"
        "onset": int, "apex": int, "offset": int, # TRUE key frames (intensity 0 / 1 / 0)
        "written": {...},                # annotation cells that deliberately differ ({"apex": "/"})
        "first_frame": int, "last_frame": int, "n_frames": int,
        "amplitude": "micro" | "macro",
        "amplitude_px_per_unit": float,  # px moved by a unit AU vector in this clip
        "peak_displacement_px": float,   # largest displacement at the apex (canvas px, before scale)
        "intensity": [float x n_frames], # expression intensity of every written frame
        "head_pose": {"centre": [cx, cy], "trajectory": {...},
                      "tx": [..], "ty": [..], "rot_deg": [..], "scale": [..]},   # per written frame
        "matrix_onset": [[a, b, c], [d, e, f]],   # canvas -> frame transform at the onset frame
        "gain": [float x n_frames], "gain_trajectory": {...}, "noise_sigma": float,
        "landmarks_onset": [[x, y] x 68],    # exact positions in the onset frame
        "landmarks_apex": [[x, y] x 68],     # exact positions in the apex frame (expression applied)
        "landmarks_first": [[x, y] x 68],    # in the first written frame (== onset for micro layouts)
        "au_anchors_onset": [{"au": str, "x": float, "y": float, "sigma_px": float}]
      }]
    }

Arrays listed "per written frame" have one entry per frame in ``first_frame .. last_frame`` order.
Each trajectory component is ``start + drift * (sin(2 pi freq_per_clip u + phase) - sin(phase))``
with ``u`` running 0 -> 1 over the written frames (see :func:`mepipe.synth.render.sample_nuisance`).
To undo the head motion between two frames ``i`` and ``j`` of a clip, warp by ``P_j P_i^{-1}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "mepipe.synth/ground-truth"
SCHEMA_VERSION = 1
GROUND_TRUTH_FILE = "synth_ground_truth.json"


def points(arr: np.ndarray, digits: int = 3) -> list[list[float]]:
    """``(N, 2)`` array -> nested list rounded to ``digits`` decimals (for JSON)."""
    return [[round(float(x), digits), round(float(y), digits)] for x, y in np.asarray(arr, dtype=np.float64)]


def series(arr: np.ndarray, digits: int = 5) -> list[float]:
    """``(T,)`` array -> list rounded to ``digits`` decimals."""
    return [round(float(v), digits) for v in np.asarray(arr, dtype=np.float64).ravel()]


def write_ground_truth(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as stable, indented JSON (same content gives identical bytes)."""
    path.write_text(json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")


def read_ground_truth(path: Path) -> dict[str, Any]:
    """Read a ground-truth file (``OUT/synth_ground_truth.json`` or the folder holding it).

    Raises:
        ValueError: when the file is not a mepipe.synth ground truth of a known schema version.
    """
    p = Path(path)
    if p.is_dir():
        p = p / GROUND_TRUTH_FILE
    doc = json.loads(p.read_text(encoding="utf-8"))
    if doc.get("schema") != SCHEMA or doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{p}: not a {SCHEMA} v{SCHEMA_VERSION} file (found {doc.get('schema')!r} v{doc.get('schema_version')!r})"
        )
    return doc
