"""Model registry: classifiers (``MODELS``) and pre-training networks (``PRETRAINERS``).

Every classifier factory has the signature ``factory(cfg: ModelConfig, num_classes: int) -> nn.Module``;
the module accepts a pair batch ``(B, 2, 3, N, N)`` (or, for the models in :data:`FLOW_INPUTS`, a flow
batch ``(B, C, n, n)`` made from the onset/apex pair as that entry says; :mod:`mepipe.train.flowdata`),
returns logits ``(B, K)`` from ``forward`` and an output with ``.logits`` and ``.heatmap()`` (``(B, h, w)``
in ``[0, 1]``) from ``forward_all``. The registry-wide tests build, run and train every entry.

Importing this module is cheap (no torch): the factories import their network modules when called, so
the config and the command line can list and check model names without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mepipe.flow import STSTNET_INPUT, FlowInput
from mepipe.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from mepipe.train.config import MA2MIConfig, ModelConfig
    from mepipe.train.models.ma2mi import MA2MI
    from mepipe.train.models.miacnet import MIACNet
    from mepipe.train.models.resnet import ResNetDiff
    from mepipe.train.models.ststnet import STSTNet

ModelFactory = Callable[["ModelConfig", int], "nn.Module"]
MODELS: Registry[ModelFactory] = Registry("model")
PRETRAINERS: Registry[Callable[[ModelConfig, MA2MIConfig], nn.Module]] = Registry("pre-training model")
FLOW_INPUTS: dict[str, FlowInput] = {}
"""Models that read optical flow instead of frame pairs, and the flow input each one reads."""


def _miacnet(cfg: ModelConfig, num_classes: int, **force: object) -> MIACNet:
    from mepipe.train.models.miacnet import MIACNet

    kw: dict[str, Any] = dict(
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
        attention_init=cfg.attention_init,
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


@MODELS.register("resnet-diff")
def resnet_diff(cfg: ModelConfig, num_classes: int) -> ResNetDiff:
    """Baseline: a plain ResNet-18-style network on ``apex - onset`` (uses ``width`` and ``dropout``)."""
    from mepipe.train.models.resnet import ResNetDiff

    return ResNetDiff(num_classes, width=cfg.width, dropout=cfg.dropout)


@MODELS.register("ststnet")
def ststnet(cfg: ModelConfig, num_classes: int) -> STSTNet:
    """Baseline: STSTNet (Liong et al. 2019) on the 28x28 (u, v, strain) onset -> apex flow image (uses
    ``dropout`` only; ``input_size`` and ``width`` do not apply)."""
    from mepipe.train.models.ststnet import STSTNet

    return STSTNet(num_classes, dropout=cfg.dropout)


FLOW_INPUTS["ststnet"] = STSTNET_INPUT


def flow_input(name: str) -> FlowInput | None:
    """The flow input model ``name`` reads, ``None`` for the models on onset/apex frame pairs."""
    return FLOW_INPUTS.get(name)


@PRETRAINERS.register("ma2mi")
def ma2mi(cfg: ModelConfig, m: MA2MIConfig) -> MA2MI:
    """MA2MI network whose ``act``/``pos`` match ``MODELS.get(cfg.name)(cfg, K)`` for transfer."""
    from mepipe.train.models.ma2mi import MA2MI

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
        pixel_head=m.pixel_head,
        pixel_goal=m.pixel_goal,
        attention_init=cfg.attention_init,
    )


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """Build the classifier ``cfg.name`` (an unknown name raises listing the registered ones)."""
    return MODELS.get(cfg.name)(cfg, num_classes)


__all__ = ["FLOW_INPUTS", "MODELS", "PRETRAINERS", "ModelFactory", "build_model", "flow_input"]
