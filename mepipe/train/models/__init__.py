"""Model registry: classifiers (``MODELS``) and pre-training networks (``PRETRAINERS``).

Every classifier factory has the signature ``factory(cfg: ModelConfig, num_classes: int) -> nn.Module``
and accepts a pair batch ``(B, 2, 3, N, N)``; the registry-wide tests build and run each entry.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mepipe.registry import Registry
from mepipe.train.config import MA2MIConfig, ModelConfig
from mepipe.train.models.ma2mi import MA2MI, transfer_state
from mepipe.train.models.miacnet import MIACNet, MIACNetOutput

ModelFactory = Callable[[ModelConfig, int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
PRETRAINERS: Registry[Callable[[ModelConfig, MA2MIConfig], nn.Module]] = Registry("pre-training model")


def _miacnet(cfg: ModelConfig, num_classes: int, **force: object) -> MIACNet:
    kw: dict = dict(
        input_size=cfg.input_size,
        width=cfg.width,
        action_input=cfg.action_input,
        position=cfg.position,
        attention=cfg.attention,
        pos_layers=cfg.pos_layers,
        pos_heads=cfg.pos_heads,
        pos_input=cfg.pos_input,
        fusion=cfg.fusion,
        head=cfg.head,
        dropout=cfg.dropout,
    )
    kw.update(force)
    return MIACNet(num_classes, **kw)


@MODELS.register("miacnet")
def miacnet(cfg: ModelConfig, num_classes: int) -> MIACNet:
    """MIACNet with the switches exactly as configured (default: both branches, attention on)."""
    return _miacnet(cfg, num_classes)


@MODELS.register("miacnet-nopos")
def miacnet_nopos(cfg: ModelConfig, num_classes: int) -> MIACNet:
    """Ablation: action branch only (no position branch)."""
    return _miacnet(cfg, num_classes, position=False)


@MODELS.register("miacnet-noatt")
def miacnet_noatt(cfg: ModelConfig, num_classes: int) -> MIACNet:
    """Ablation: no cascaded spatial attention in the action branch."""
    return _miacnet(cfg, num_classes, attention=False)


@MODELS.register("single-branch")
def single_branch(cfg: ModelConfig, num_classes: int) -> MIACNet:
    """Baseline: one residual CNN on both frames stacked (6 channels), no position branch, no attention."""
    return _miacnet(cfg, num_classes, action_input="stack", position=False, attention=False)


@PRETRAINERS.register("ma2mi")
def ma2mi(cfg: ModelConfig, m: MA2MIConfig) -> MA2MI:
    """MA2MI network whose ``act``/``pos`` match ``MODELS.get(cfg.name)(cfg, K)`` for transfer."""
    return MA2MI(
        cfg.input_size,
        cfg.width,
        cfg.action_input,
        cfg.attention,
        cfg.pos_layers,
        cfg.pos_heads,
        cfg.pos_input,
        bottleneck=m.bottleneck,
        decoder_blocks=m.decoder_blocks,
        ema=m.ema,
        target=m.target,
        target_norm=m.target_norm,
        pixel_weight=m.pixel_weight,
        pixel_size=m.pixel_size,
    )


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """Build the classifier ``cfg.name`` (unknown names raise listing the registered ones)."""
    return MODELS.get(cfg.name)(cfg, num_classes)


__all__ = ["MA2MI", "MIACNet", "MIACNetOutput", "MODELS", "PRETRAINERS", "build_model", "transfer_state"]
