"""Prediction and the one-time evaluation of a fold's sealed held-out clips.

:func:`predict` scores clips on their annotated onset/apex pair (no augmentation, eval mode).
:func:`evaluate_held_out` is the only function that receives a fold's test clips: it gets a trained
model and the sealed :class:`~mepipe.train.protocol.HeldOut`, releases it (once), and returns one row
per clip. It has no optimiser, no epoch and no callback, so nothing it sees can flow back into
training or model selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mepipe.train.data import keyframe_pairs
from mepipe.train.ddp import unwrap
from mepipe.train.flowdata import FlowDataset, make_dataset, model_flow_input, prepare_batch
from mepipe.train.frames import ClipInfo
from mepipe.train.protocol import HeldOut
from mepipe.train.runtime import Runtime


@dataclass
class HeldOutPredictions:
    """Test predictions of one fold: ``rows`` (one dict per clip) and heat-map samples."""

    rows: list[dict[str, Any]]
    heat_samples: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    clips: Sequence[ClipInfo],
    *,
    size: int,
    input_size: int,
    batch_size: int,
    rt: Runtime,
    heat: int = 0,
) -> Any:
    """Class probabilities ``(N, K) float64`` for the annotated onset/apex pair of each clip.

    Args:
        model: a registered classifier (``forward_all`` returns ``.logits`` and ``.heatmap()``); a model
            with a ``flow_input`` (flow models) is fed its flow inputs (:mod:`mepipe.train.flowdata`).
        clips: the clips to score.
        size: stored crop side S; input_size: model input side N; batch_size: clips per forward pass.
        rt: runtime.
        heat: with ``heat > 0`` returns ``(probs, samples)`` where ``samples`` holds onset/apex images
            ``(N, N, 3) uint8`` and the heat map ``(h, w)`` of the first ``heat`` clips.
    """
    from mepipe.train.pictures import to_uint8_images

    net = unwrap(model)
    was_training = net.training
    net.eval()
    dataset = make_dataset(clips, size, model_flow_input(net))
    pairs = keyframe_pairs(clips, 0, None)
    probs, samples = [], []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        batch = dataset.__getitems__(chunk)
        x = prepare_batch(batch, input_size, device=rt.device)
        with rt.autocast():
            out = net.forward_all(x)
        probs.append(out.logits.float().softmax(1).cpu().double().numpy())
        want = heat - len(samples)
        if want > 0:
            hm = out.heatmap()[:want].cpu().numpy()
            if isinstance(dataset, FlowDataset):  # the pictures show the crops the flow came from
                fr = dataset.frames(chunk[:want])["frames"].numpy()
                on, ap = fr[:, 0], fr[:, 1]
            else:
                on, ap = to_uint8_images(x[:want, 0]), to_uint8_images(x[:want, 1])
            for j in range(len(hm)):
                samples.append({"onset": on[j], "apex": ap[j], "heat": hm[j], "key": clips[s + j].key})
    dataset.handles.close()
    net.train(was_training)
    p = np.concatenate(probs) if probs else np.zeros((0, 0))
    return (p, samples) if heat > 0 else p


def evaluate_held_out(
    model: torch.nn.Module,
    held_out: HeldOut,
    *,
    size: int,
    input_size: int,
    batch_size: int,
    rt: Runtime,
    classes: Sequence[str],
    heat: int = 0,
) -> HeldOutPredictions:
    """Predict a fold's sealed test clips, once (a second call on the same fold raises ``PeekingError``).

    Returns:
        One row per clip: ``fold, key, dataset, subject, label, pred, label_name, pred_name, p_<class>``;
        and up to ``heat`` heat-map samples titled with the clip id and the full class names.
    """
    clips = held_out.release()
    probs, samples = predict(
        model, clips, size=size, input_size=input_size, batch_size=batch_size, rt=rt, heat=max(heat, 1)
    )
    samples = samples[:heat]
    rows = []
    for c, p in zip(clips, probs, strict=True):
        pred = int(p.argmax())
        row = {
            "fold": held_out.fold,
            "key": c.key,
            "dataset": c.dataset,
            "subject": c.subject,
            "label": c.label,
            "pred": pred,
            "label_name": classes[c.label],
            "pred_name": classes[pred],
        }
        row.update({f"p_{name}": round(float(v), 6) for name, v in zip(classes, p, strict=True)})
        rows.append(row)
    by_key = {r["key"]: r for r in rows}
    for s in samples:
        r = by_key[s["key"]]
        s["title"] = r["key"]
        s["subtitle"] = (
            f"true {r['label_name']}, predicted {r['pred_name']} (p={r['p_' + r['pred_name']]:.2f})"
        )
    return HeldOutPredictions(rows, samples)
