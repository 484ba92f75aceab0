"""The sections of a training config (``data``, ``augment``, ``model``, ``ma2mi``, ``optim``, ``run``,
``protocol``): types, ranges, choices and defaults, each key documented for ``docs/training.md``.

The top-level configs and their loading live in :mod:`mepipe.train.config` (import the sections from
there too).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from mepipe.schema import Strict, parse_range

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PROTOCOLS = ("loso", "lodo", "all")


def _path_text(value: Any) -> Any:
    """Paths may be given as ``os.PathLike``; ``null`` means "not set" (the empty string)."""
    if value is None:
        return ""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _comma_list(value: Any) -> Any:
    """``"casme2,samm"`` (a flag or ``--set`` value) -> ``["casme2", "samm"]``; ``null`` -> ``[]``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _model_names() -> list[str]:
    from mepipe.train.models import MODELS  # the registry only (no torch, no cycle: it imports no config)

    return MODELS.names()


PathText = Annotated[str, BeforeValidator(_path_text)]
NameList = Annotated[list[str], BeforeValidator(_comma_list)]


class DataConfig(Strict):
    """Where the frames come from and how pairs are drawn."""

    shards: PathText = Field(
        default="", description="build folder (`--out` of `mepipe build-dataset`: manifest.csv + shards/)"
    )
    datasets: NameList = Field(
        default_factory=list, description="keep only clips of these datasets (empty: all)"
    )
    delta: tuple[int, int] = Field(
        default=(1, 8),
        description="pre-training frame offset range [a, b] (or `a:b`), inclusive, 1 <= a <= b; "
        "δ ~ U{a..b} redrawn every epoch",
    )
    delta_unit: Literal["frames", "ms"] = Field(
        default="frames",
        description="unit of `delta`: `frames` (source frames, so subsampled clips keep their time "
        "offsets) or `ms` (integer milliseconds: equal time offsets at every frame rate); the "
        "semantics of the build's `pairs.unit` (mepipe/pairs.py)",
    )
    pairs: Literal["sample", "table"] = Field(
        default="sample",
        description="pre-training pairs: `sample` (drawn every epoch with delta, pairs_per_clip) or "
        "`table` (the build's pairs.csv, reshuffled every epoch; see `mepipe pairs`)",
    )
    pairs_per_clip: int = Field(default=16, ge=1, description="pre-training pairs drawn per clip and epoch")
    jitter: int = Field(
        default=0, ge=0, description="fine-tuning: onset/apex moved by U{-jitter..jitter} frames every epoch"
    )
    labels: str = Field(
        default="casme2_5", description="fine-tuning label scheme (`manifests/labels/<name>.yaml`)"
    )
    batch_size: int = Field(
        default=16, ge=1, description="samples per optimiser step (per process under DDP)"
    )
    num_workers: int = Field(
        default=0, ge=0, description="DataLoader worker processes (0: read in the main one)"
    )

    @field_validator("delta", mode="before")
    @classmethod
    def _delta_text(cls, v: Any) -> Any:
        if isinstance(v, str) and ":" in v:  # the `--delta 1:4` form
            try:
                return parse_range(v)
            except ValueError:
                raise ValueError(f"{v!r} is not A:B with whole numbers (e.g. --delta 1:4)") from None
        return v

    @field_validator("delta")
    @classmethod
    def _delta_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1]:
            raise ValueError(f"need 1 <= a <= b, got {v[0]}:{v[1]} (e.g. --delta 1:4)")
        return v

    @field_validator("labels")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        from mepipe.labels import available_schemes

        names = available_schemes()
        if v not in names:
            raise ValueError(f"unknown label scheme {v!r}; available: {', '.join(names)}")
        return v


class AugmentConfig(Strict):
    """Augmentations, drawn once per pair and applied identically to both frames."""

    enabled: bool = Field(default=True, description="master switch")
    flip: float = Field(default=0.5, ge=0.0, le=1.0, description="probability of a horizontal flip")
    rotate_deg: float = Field(
        default=8.0, ge=0.0, le=180.0, description="rotation drawn from U(-rotate_deg, rotate_deg), degrees"
    )
    scale: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="zoom factor drawn from U(1 - scale, 1 + scale)"
    )
    shift: float = Field(
        default=0.04,
        ge=0.0,
        le=0.5,
        description="translation drawn from U(-shift, shift), fraction of the side",
    )
    brightness: float = Field(
        default=0.1, ge=0.0, le=1.0, description="brightness factor from U(1 - x, 1 + x)"
    )
    contrast: float = Field(default=0.1, ge=0.0, le=1.0, description="contrast factor from U(1 - x, 1 + x)")
    saturation: float = Field(
        default=0.1, ge=0.0, le=1.0, description="saturation factor from U(1 - x, 1 + x)"
    )


class ModelConfig(Strict):
    """The classifier (`mepipe.train.models`); MIACNet keys are ignored by models that have no such part."""

    name: str = Field(default="miacnet", description=f"registered model: {', '.join(_model_names())}")
    input_size: int = Field(
        default=112, ge=32, description="side of the square input, a multiple of 16 (112, 128, 224)"
    )
    width: int = Field(
        default=16, ge=4, description="channels of the first stage; stages use width x (1, 2, 4, 8)"
    )
    action_input: Literal["diff", "stack"] = Field(
        default="diff", description="action branch input: `diff` (I_t+δ - I_t) or `stack` (both frames)"
    )
    position: bool = Field(default=True, description="use the position branch (false: ablation)")
    attention: bool = Field(default=True, description="cascaded spatial attention in the action branch")
    pos_layers: int = Field(default=2, ge=1, description="position transformer depth")
    pos_heads: int = Field(default=4, ge=1, description="position transformer heads; must divide 8 x width")
    pos_input: Literal["resize", "patch"] = Field(
        default="resize",
        description="`resize` (I_t area-resized to the N/16 grid, MMNet-like) or `patch` (16x16 patches)",
    )
    fusion: Literal["sum", "gate", "scale"] = Field(
        default="scale",
        description="`sum` (F = A + P), `gate` (learned gate on P) or `scale` (F = A + γ ⊙ P, γ a learned "
        "per-channel scale starting at 0: the model starts as its action branch)",
    )
    head: Literal["flatten", "mean"] = Field(
        default="flatten",
        description="`flatten` (MMNet-like) or `mean` (global average pooling) before the head",
    )
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0, description="dropout before the linear head")
    attention_init: Literal["positive", "random"] = Field(
        default="positive",
        description="spatial-attention 1x1 convs start at 0.5 (`positive`: attend where the action "
        "features are strong) or PyTorch's random init (`random`: each map's sign is a coin flip)",
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        from mepipe.train.models import MODELS

        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; valid names: {', '.join(MODELS.names())}")
        return v

    @field_validator("input_size")
    @classmethod
    def _multiple_of_16(cls, v: int) -> int:
        if v % 16:
            raise ValueError(f"{v} is not a multiple of 16 (use 112, 128 or 224)")
        return v

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if (self.width * 8) % self.pos_heads:
            raise ValueError(f"model.pos_heads={self.pos_heads} must divide the map width 8 x {self.width}")
        return self


class MA2MIConfig(Strict):
    """MA2MI pre-training objective."""

    bottleneck: int = Field(
        default=4, ge=1, description="channels of the action code C_Δ (small: cannot carry I_t+δ)"
    )
    decoder_blocks: int = Field(
        default=2, ge=0, description="residual conv blocks of the decoder D(P_t, C_Δ)"
    )
    ema: float = Field(
        default=0.99, ge=0.0, lt=1.0, description="momentum of the EMA target encoder (stop-gradient)"
    )
    target: Literal["latent", "pixel"] = Field(
        default="pixel", description="`latent` (MSE to T(I_t+δ) + pixel term) or `pixel` (pixel term only)"
    )
    target_norm: bool = Field(default=True, description="layer-normalise the target latent over channels")
    pixel_weight: float = Field(
        default=0.5, ge=0.0, description="weight of the low-resolution pixel term (0: off)"
    )
    pixel_size: int = Field(default=56, ge=4, description="side of the low-resolution reconstruction")
    pixel_head: Literal["full", "light"] = Field(
        default="light",
        description="`full` (3x3 convs on the 8w-channel upsampled features) or `light` (1x1 conv to w "
        "channels before upsampling)",
    )
    pixel_goal: Literal["frame", "change", "motion"] = Field(
        default="motion",
        description="what the pixel term predicts: `motion`, a displacement field that warps I_t into "
        "I_t+δ (MSE relative to no motion; the action code carries how the face moved), the change "
        "I_t+δ - I_t (MSE relative to no change), or the future frame I_t+δ itself",
    )

    @model_validator(mode="after")
    def _pixel_target_needs_weight(self) -> MA2MIConfig:
        if self.target == "pixel" and self.pixel_weight <= 0:
            raise ValueError("ma2mi.target=pixel needs ma2mi.pixel_weight > 0")
        if self.pixel_goal != "frame" and self.pixel_weight <= 0:  # no pixel term: the goal would be ignored
            raise ValueError(
                f"ma2mi.pixel_goal={self.pixel_goal} needs ma2mi.pixel_weight > 0 (or target=pixel)"
            )
        return self


class OptimConfig(Strict):
    """AdamW with a per-epoch learning-rate schedule (exponential decay or cosine, optional warm-up)."""

    epochs: int = Field(default=5, ge=1, description="fixed epoch budget (per fold when fine-tuning)")
    lr: float = Field(default=1e-3, gt=0.0, description="AdamW learning rate")
    weight_decay: float = Field(
        default=0.05, ge=0.0, description="AdamW weight decay (weights and kernels only)"
    )
    gamma: float = Field(
        default=0.97, gt=0.0, le=1.0, description="`schedule: exp`: lr multiplied by gamma after every epoch"
    )
    schedule: Literal["exp", "cosine"] = Field(
        default="exp",
        description="`exp` (lr x gamma^epoch) or `cosine` (half a cosine from lr to 0 over `epochs`: a "
        "short run ends annealed)",
    )
    warmup_epochs: int = Field(
        default=0, ge=0, description="linear warm-up: epoch e < N runs at lr x (e + 1) / (N + 1)"
    )
    init_lr_scale: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="with `init`: learning-rate multiplier of the transferred (pre-trained) parameters; "
        "the new ones keep lr",
    )
    grad_clip: float = Field(
        default=0.0, ge=0.0, description="clip the global gradient norm to this (0: off)"
    )
    freeze_epochs: int = Field(
        default=0,
        ge=0,
        description="with `init`: keep `freeze_parts` of the pre-trained weights frozen this many epochs",
    )
    freeze_parts: Literal["early", "transferred"] = Field(
        default="early",
        description="what `freeze_epochs` freezes: `early` (the stem, first action stage and patch "
        "embedding) or `transferred` (every pre-trained weight: the head and the new parameters train "
        "alone first, linear-probe-then-fine-tune)",
    )
    bn_recalibrate: bool = Field(
        default=True,
        description="recompute BatchNorm statistics exactly over the training pairs before every evaluation",
    )


class RunConfig(Strict):
    """Where and how the run executes, and what it writes."""

    out: PathText = Field(
        default="", description="run folder (config, log, checkpoints, history, metrics, pictures)"
    )
    seed: int = Field(
        default=0, ge=0, description="seeds python, numpy, torch, the samplers and augmentation"
    )
    device: str = Field(default="auto", description="`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`")
    amp: bool = Field(default=True, description="bf16 autocast on CUDA (ignored on the CPU)")
    channels_last: bool = Field(
        default=True, description="channels-last memory format on CUDA (ignored on the CPU)"
    )
    checkpoint_every: int = Field(
        default=1, ge=1, description="write the checkpoint every N epochs (and after the last)"
    )
    resume: bool = Field(default=False, description="continue an interrupted run in `out`")
    force: bool = Field(default=False, description="replace an existing run in `out` (its files are deleted)")
    pictures: int = Field(
        default=8, ge=0, description="samples drawn in heat maps / reconstructions (0: none)"
    )
    pictures_every: int = Field(
        default=5, ge=0, description="pre-training: reconstructions every N epochs (0: only after the last)"
    )
    log_every: int = Field(default=0, ge=0, description="also log the loss every N steps (0: once per epoch)")
    cpu_threads: int = Field(
        default=0, ge=0, description="torch intra-op threads during the run (0: torch's default)"
    )
    tensorboard: bool = Field(
        default=False,
        description="also write TensorBoard scalars to RUN/tensorboard (needs `mepipe[tensorboard]`)",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v):
            return v
        raise ValueError(f"unknown device {v!r}; valid: {', '.join(DEVICES)}")

    @model_validator(mode="after")
    def _force_or_resume(self) -> RunConfig:
        if self.force and self.resume:
            raise ValueError("run.force and run.resume exclude each other: resume a run or replace it")
        return self


class ProtocolConfig(Strict):
    """Evaluation protocol (fine-tuning)."""

    name: Literal["loso", "lodo", "all"] = Field(
        default="loso",
        description="`loso` (leave one subject out, subjects keyed dataset/subject), `lodo` (one dataset "
        "out) or `all` (one model on every subject, fixed budget, no test side: for deployment)",
    )
    val_subjects: int = Field(
        default=0,
        ge=0,
        description="training subjects carved out per fold to pick the epoch (0: fixed budget)",
    )
    folds: NameList = Field(default_factory=list, description="run only these folds (e.g. loso-casme2/sub01)")
    per_dataset: bool = Field(
        default=False,
        description="composite builds, loso: train each fold on the held-out subject's dataset only",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ProtocolConfig:
        if self.name == "all" and (self.val_subjects or self.folds or self.per_dataset):
            raise ValueError(
                "protocol.name=all trains on every subject with the fixed budget: leave "
                "val_subjects, folds and per_dataset unset"
            )
        if self.per_dataset and self.name != "loso":
            raise ValueError("protocol.per_dataset applies to loso only")
        return self
