"""Training configuration: typed dataclasses with CPU-friendly defaults, YAML + ``--set`` overrides.

Two top-level configs exist, :class:`PretrainConfig` (MA2MI on macro shards) and
:class:`FinetuneConfig` (MIACNet LOSO fine-tuning on micro shards). Both are plain dataclasses so that
training needs neither pydantic nor PyYAML; YAML files are read only when one is given (PyYAML is
imported lazily). Every key is validated: an unknown key or a wrong type raises
:class:`~mepipe.errors.ConfigError` naming the dotted key and the fix.

The resolved config (every default filled in) is written to ``RUN/train.resolved.yaml`` and stored in
every checkpoint under ``"config"``.

Example::

    cfg = load_train_config("pretrain", "configs/train-pretrain.yaml",
                            {"data.delta": [1, 8], "optim.epochs": 3})
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from mepipe.errors import ConfigError

TRAIN_CONFIG_VERSION = 1
RESOLVED_NAME = "train.resolved.yaml"


@dataclass
class DataConfig:
    """Where the frames come from and how pairs are drawn.

    Attributes:
        shards: build folder (``--out`` of ``mepipe build-dataset``) holding ``manifest.csv`` + ``shards/``.
        datasets: keep only clips of these datasets (empty: all).
        delta: pre-training offset range ``[a, b]`` in frames, inclusive; ``δ ~ U{a..b}`` each epoch.
        pairs: pre-training pairs: ``sample`` (drawn from the manifest every epoch with ``delta`` and
            ``pairs_per_clip``) or ``table`` (the build's ``pairs.csv``, fixed pairs reshuffled every
            epoch; see ``mepipe pairs``).
        pairs_per_clip: pre-training pairs drawn from each clip per epoch (``sample``).
        jitter: fine-tuning: onset/apex indices moved by ``U{-jitter..jitter}`` frames per epoch.
        labels: fine-tuning label scheme name (``manifests/labels/<name>.yaml``).
        batch_size: samples per optimiser step (per process under DDP).
        num_workers: DataLoader workers (0 is fastest on 2 cores for raw frames).
    """

    shards: str = ""
    datasets: list[str] = field(default_factory=list)
    delta: tuple[int, int] = (1, 4)
    pairs: Literal["sample", "table"] = "sample"
    pairs_per_clip: int = 16
    jitter: int = 0
    labels: str = "casme2_5"
    batch_size: int = 16
    num_workers: int = 0


@dataclass
class AugmentConfig:
    """Augmentations, applied with identical parameters to both frames of a pair.

    Attributes:
        enabled: master switch.
        flip: probability of a horizontal flip.
        rotate_deg: rotation drawn from ``U(-rotate_deg, rotate_deg)`` degrees.
        scale: zoom factor drawn from ``U(1 - scale, 1 + scale)``.
        shift: translation drawn from ``U(-shift, shift)`` as a fraction of the image side.
        brightness, contrast, saturation: colour factors drawn from ``U(1 - x, 1 + x)``.
    """

    enabled: bool = True
    flip: float = 0.5
    rotate_deg: float = 8.0
    scale: float = 0.05
    shift: float = 0.04
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1


@dataclass
class ModelConfig:
    """MIACNet / MA2MI architecture (see docs and ``mepipe.train.models``).

    Attributes:
        name: registered model (``miacnet``, ``miacnet-nopos``, ``miacnet-noatt``, ``single-branch``).
        input_size: side of the square input (112, 128 or 224); frames are resized to it.
        width: channels of the first action stage; stages use ``width * (1, 2, 4, 8)``.
        action_input: ``diff`` (``I_{t+δ} - I_t``) or ``stack`` (both frames, 6 channels).
        position: use the position branch (``False``: ablation "no position branch").
        attention: cascaded spatial attention in the action branch (``False``: ablation).
        pos_layers, pos_heads: the position transformer's depth and heads.
        pos_input: ``resize`` (``I_t`` area-resized to the N/16 grid + 1x1 embedding, MMNet-like) or
            ``patch`` (16x16 patch embedding; more appearance detail, over-fits tiny sets).
        fusion: ``sum`` (``F = A + P``) or ``gate`` (``F = A + σ(g([A; P])) · P``).
        head: ``flatten`` (MMNet-like) or ``mean`` (global average pooling) before the linear head.
        dropout: dropout before the head.
    """

    name: str = "miacnet"
    input_size: int = 112
    width: int = 16
    action_input: Literal["diff", "stack"] = "diff"
    position: bool = True
    attention: bool = True
    pos_layers: int = 2
    pos_heads: int = 4
    pos_input: Literal["resize", "patch"] = "resize"
    fusion: Literal["sum", "gate"] = "sum"
    head: Literal["flatten", "mean"] = "flatten"
    dropout: float = 0.2


@dataclass
class MA2MIConfig:
    """MA2MI pre-training objective.

    Attributes:
        bottleneck: channels of the action code ``C_Δ`` (small, so it cannot carry ``I_{t+δ}``).
        decoder_blocks: residual conv blocks of the decoder ``D(P_t, C_Δ)``.
        ema: momentum of the target encoder ``T`` (EMA copy of ``E_pos``; stop-gradient).
        target: ``latent`` (MSE to ``T(I_{t+δ})`` + optional pixel term) or ``pixel`` (pixel term only).
        target_norm: layer-normalise the target latent over channels (guards against scale collapse).
        pixel_weight: weight of the low-resolution pixel reconstruction term (0 disables it).
        pixel_size: side of the low-resolution reconstruction.
    """

    bottleneck: int = 4
    decoder_blocks: int = 2
    ema: float = 0.99
    target: Literal["latent", "pixel"] = "latent"
    target_norm: bool = True
    pixel_weight: float = 0.5
    pixel_size: int = 32


@dataclass
class OptimConfig:
    """AdamW with per-epoch exponential decay.

    Attributes:
        epochs: fixed epoch budget (per fold when fine-tuning).
        lr, weight_decay: AdamW settings.
        gamma: learning rate multiplied by ``gamma`` after every epoch.
        grad_clip: clip the global gradient norm to this (0: off).
        freeze_epochs: fine-tuning with ``--init``: keep the pre-trained stem and first stage frozen
            for this many epochs.
        bn_recalibrate: before every evaluation (validation, test, pictures), recompute BatchNorm
            statistics exactly over the training pairs (without augmentation). Tiny training sets
            give too few steps for the running averages to settle; without this, eval-mode
            predictions can collapse to one class.
    """

    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.05
    gamma: float = 0.97
    grad_clip: float = 0.0
    freeze_epochs: int = 0
    bn_recalibrate: bool = True


@dataclass
class RunConfig:
    """Where and how the run executes.

    Attributes:
        out: run folder (config, checkpoints, metrics, pictures).
        seed: seeds python, numpy, torch, the samplers and the augmentation generator.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` / ``cuda:N``.
        amp: bf16 autocast on CUDA (ignored on CPU).
        channels_last: channels-last memory format on CUDA (ignored on CPU).
        checkpoint_every: write ``last.pt`` every N epochs (and always after the last one).
        resume: continue from ``last.pt`` (pre-training) or the per-fold checkpoints (fine-tuning).
        pictures: how many samples to draw (heat maps / reconstructions); 0 disables pictures.
        log_every: print a line every N steps (0: once per epoch).
        cpu_threads: torch intra-op threads while the run lasts (0: leave torch's default). On a
            small or busy CPU machine 1 can be much faster for small models.
    """

    out: str = ""
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    checkpoint_every: int = 1
    resume: bool = False
    pictures: int = 8
    log_every: int = 0
    cpu_threads: int = 0


@dataclass
class ProtocolConfig:
    """Evaluation protocol (fine-tuning).

    Attributes:
        name: ``loso`` (leave one subject out, subjects keyed ``dataset/subject``) or ``lodo``.
        val_subjects: number of *training* subjects carved out per fold for epoch selection
            (0: no selection, the fixed epoch budget is used). The held-out subject is never used.
        folds: run only these fold names (e.g. ``loso-casme2/sub01``); empty: all.
        per_dataset: composite builds, ``loso`` only: each fold trains on the held-out subject's own
            dataset (per-dataset LOSO inside the composite); default: on all other subjects.
    """

    name: Literal["loso", "lodo"] = "loso"
    val_subjects: int = 0
    folds: list[str] = field(default_factory=list)
    per_dataset: bool = False


@dataclass
class PretrainConfig:
    """Top-level MA2MI pre-training config (``mepipe train pretrain``)."""

    version: int = TRAIN_CONFIG_VERSION
    kind: Literal["pretrain"] = "pretrain"
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=32))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ma2mi: MA2MIConfig = field(default_factory=MA2MIConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=10, lr=1e-3, weight_decay=0.05))
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class FinetuneConfig:
    """Top-level MIACNet fine-tuning config (``mepipe train finetune``).

    Attributes:
        init: checkpoint of an MA2MI pre-training run (``RUN/last.pt``) whose ``E_pos``/``E_act``
            initialise MIACNet; empty: train from scratch.
    """

    version: int = TRAIN_CONFIG_VERSION
    kind: Literal["finetune"] = "finetune"
    init: str = ""
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=16, jitter=0))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(epochs=40, lr=8e-4, weight_decay=0.05, gamma=0.97)
    )
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    run: RunConfig = field(default_factory=RunConfig)


AnyConfig = PretrainConfig | FinetuneConfig
C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Cast a YAML/JSON value to the annotated type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str) and ":" in value:  # "1:4" form used by --delta
            value = value.split(":")
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values like [1, 4] or '1:4', got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is list:
        (arg,) = typing.get_args(tp)
        if value is None:
            return []
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, arg, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key(s) {[where + u for u in unknown]}; valid keys here: {sorted(names)}"
        )
    default = cls()
    kwargs = {}
    for name in names:
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        else:
            kwargs[name] = getattr(default, name)
    return cls(**kwargs)


def _merge(base: dict[str, Any], dotted: str, value: Any) -> None:
    node = base
    *parents, leaf = dotted.split(".")
    for p in parents:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {p} is not a section")
        node = child
    node[leaf] = value


def config_from_dict(
    kind: Literal["pretrain", "finetune"],
    data: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> AnyConfig:
    """Build a validated config from a (partial) nested mapping plus dotted-key overrides.

    Args:
        kind: ``pretrain`` or ``finetune``.
        data: nested mapping as read from YAML; missing keys take the defaults.
        overrides: ``{"optim.epochs": 3, "data.delta": "1:8"}``; applied after ``data``.

    Returns:
        The validated :class:`PretrainConfig` or :class:`FinetuneConfig`.
    """
    cls: type = PretrainConfig if kind == "pretrain" else FinetuneConfig
    merged = json.loads(json.dumps(data or {}))
    if not isinstance(merged, dict):
        raise ConfigError("a training config must be a mapping with sections data, model, optim, run, ...")
    merged.setdefault("kind", kind)
    if merged["kind"] != kind:
        raise ConfigError(f"config kind is {merged['kind']!r} but this command needs a {kind!r} config")
    # Section defaults differ per kind (e.g. batch size), so start from the kind's defaults.
    base = config_to_dict(cls())
    for section, values in merged.items():
        if isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section].update(values)
        else:
            base[section] = values
    for dotted, value in (overrides or {}).items():
        _merge(base, dotted, value)
    cfg = _build(cls, base)
    validate_config(cfg)
    return cfg


def load_train_config(
    kind: Literal["pretrain", "finetune"],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> AnyConfig:
    """Read a training YAML (optional) and apply dotted ``overrides`` (CLI ``--set`` wins)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"training config {p} not found; see configs/ for examples")
        import yaml

        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    return config_from_dict(kind, data, overrides)


def validate_config(cfg: AnyConfig) -> None:
    """Cross-field checks; raises ConfigError naming the key and the fix."""
    if cfg.version != TRAIN_CONFIG_VERSION:
        raise ConfigError(
            f"version: {cfg.version} is not supported; this mepipe reads {TRAIN_CONFIG_VERSION}"
        )
    a, b = cfg.data.delta
    if not 1 <= a <= b:
        raise ConfigError(f"data.delta: need 1 <= a <= b, got {a}:{b} (e.g. --delta 1:4)")
    if cfg.model.input_size % 16 or cfg.model.input_size < 32:
        raise ConfigError(
            f"model.input_size: {cfg.model.input_size} must be a multiple of 16 and >= 32 (112, 128 or 224)"
        )
    from mepipe.train.models import MODELS  # late: the models module imports this one

    if cfg.model.name not in MODELS:
        raise ConfigError(
            f"model.name: unknown model {cfg.model.name!r}; valid names: {', '.join(MODELS.names())}"
        )
    if cfg.model.width < 4:
        raise ConfigError("model.width: must be >= 4")
    if (cfg.model.width * 8) % cfg.model.pos_heads:
        raise ConfigError(
            f"model.pos_heads: {cfg.model.pos_heads} must divide the map width {cfg.model.width * 8}"
        )
    if cfg.data.batch_size < 1 or cfg.optim.epochs < 1:
        raise ConfigError("data.batch_size and optim.epochs must be >= 1")
    if cfg.data.jitter < 0 or cfg.data.pairs_per_clip < 1:
        raise ConfigError("data.jitter must be >= 0 and data.pairs_per_clip >= 1")
    if isinstance(cfg, PretrainConfig):
        if not 0.0 <= cfg.ma2mi.ema < 1.0:
            raise ConfigError("ma2mi.ema: must be in [0, 1)")
        if cfg.ma2mi.target == "pixel" and cfg.ma2mi.pixel_weight <= 0:
            raise ConfigError("ma2mi.target=pixel needs ma2mi.pixel_weight > 0")
    if isinstance(cfg, FinetuneConfig) and cfg.protocol.val_subjects < 0:
        raise ConfigError("protocol.val_subjects must be >= 0")


def dump_config(cfg: AnyConfig) -> str:
    """The resolved config as YAML text (JSON text, which is valid YAML, when PyYAML is missing)."""
    data = config_to_dict(cfg)
    try:
        import yaml
    except ImportError:
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False)


def write_resolved(cfg: AnyConfig, out_dir: Path) -> Path:
    """Write ``RUN/train.resolved.yaml`` with every default filled in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / RESOLVED_NAME
    p.write_text(dump_config(cfg))
    return p
