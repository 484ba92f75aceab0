"""A trained model for use: ``RUN/model.pt`` of ``mepipe train finetune --protocol all``.

The file is a ``torch.save`` dict of plain tensors and data (it loads with ``weights_only=True``)::

    {"format": "mepipe-model", "version": 1,
     "model": state_dict, "model_config": {...},      # the `model` section: rebuilds the network
     "classes": [...], "scheme": "casme2_5",          # what each output index means
     "input": {"crop_size": S, "input_size": N, "mean": [...], "std": [...],
               "flow": {...} | None},                 # flow models: the FlowInput they read
     "pipeline": {...},                               # the build's pipeline.resolved.yaml: how crops,
                                                      # keyframes and alignment were made
     "provenance": {...}, "config": {...}}            # versions, commit, build hash; the training config

so that a later ``mepipe predict`` can rebuild the face stage and keyframes exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mepipe.errors import ConfigError
from mepipe.flow import FlowInput
from mepipe.train.augment import MEAN, STD, prepare_pairs
from mepipe.train.checkpoint import safe_load
from mepipe.train.config import ModelConfig
from mepipe.train.flowdata import inputs_from_frames, model_flow_input
from mepipe.train.models import build_model

MODEL_FORMAT = "mepipe-model"
MODEL_VERSION = 1


@dataclass
class TrainedModel:
    """A model rebuilt from ``model.pt`` (eval mode, on ``device``) and everything needed to use it.

    Attributes:
        model: the classifier.
        classes: class names, index = output position.
        scheme: the label scheme's name.
        model_config: the ``model`` section it was built from.
        crop_size, input_size: stored crop side S the pipeline writes, and the network input side N.
        pipeline: the build's resolved pipeline (empty when the build recorded none).
        provenance: versions, commit and build hashes of the training run.
    """

    model: nn.Module
    classes: list[str]
    scheme: str
    model_config: ModelConfig
    crop_size: int
    input_size: int
    pipeline: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def flow_input(self) -> FlowInput | None:
        """What a flow model reads (``None``: the model reads the frame pair itself)."""
        return model_flow_input(self.model)

    def inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """Model inputs of onset/apex pairs ``(B, 2, S, S, 3) uint8`` RGB: normalised pairs
        ``(B, 2, 3, N, N)``, or for flow models their flow images (:attr:`flow_input`)."""
        device = next(self.model.parameters()).device
        spec = self.flow_input
        if spec is not None:
            return inputs_from_frames(frames, spec).to(device)
        return prepare_pairs(frames.to(device), self.input_size)

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K) float32`` of onset/apex pairs ``(B, 2, S, S, 3) uint8`` RGB."""
        return self.model(self.inputs(frames)).float().softmax(1).cpu()

    @torch.no_grad()
    def explain(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities (B, K), heat maps (B, h, w) in [0, 1])`` of onset/apex pairs; the heat map
        is the model's own (``forward_all(...).heatmap()``, see each model's docstring)."""
        out = self.model.forward_all(self.inputs(frames))
        return out.logits.float().softmax(1).cpu(), out.heatmap().float().cpu()


def save_model(
    path: Path,
    model: nn.Module,
    *,
    classes: list[str],
    scheme: str,
    model_config: dict[str, Any],
    crop_size: int,
    pipeline: dict[str, Any],
    provenance: dict[str, Any],
    config: dict[str, Any],
) -> Path:
    """Write ``model.pt`` atomically (see the module docstring for its content)."""
    data = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": model_config,
        "classes": list(classes),
        "scheme": scheme,
        "input": {
            "crop_size": int(crop_size),
            "input_size": int(model_config["input_size"]),
            "mean": list(MEAN),
            "std": list(STD),
            "flow": spec.to_dict() if (spec := model_flow_input(model)) is not None else None,
        },
        "pipeline": pipeline,
        "provenance": provenance,
        "config": config,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild the model saved by :func:`save_model`.

    Raises:
        ConfigError: missing file, not loadable with ``weights_only=True``, or not a mepipe model file.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"model file {p} not found; train one with `mepipe train finetune --protocol all`")
    data = safe_load(p)
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{p} is not a mepipe model file (expected RUN/model.pt of `--protocol all`)")
    if data.get("version") != MODEL_VERSION:
        raise ConfigError(
            f"{p}: model file version {data.get('version')} is not supported (this mepipe reads {MODEL_VERSION})"
        )
    cfg = ModelConfig(**data["model_config"])
    net = build_model(cfg, len(data["classes"]))
    net.load_state_dict(data["model"])
    if data["input"].get("flow"):
        net.flow_input = FlowInput.from_dict(data["input"]["flow"])
    net.to(device).eval()
    return TrainedModel(
        net,
        list(data["classes"]),
        str(data["scheme"]),
        cfg,
        int(data["input"]["crop_size"]),
        int(data["input"]["input_size"]),
        dict(data.get("pipeline") or {}),
        dict(data.get("provenance") or {}),
    )
