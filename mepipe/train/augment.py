"""Batch preparation and pair augmentation in plain torch (runs on the training device).

A pair batch arrives as ``(B, 2, S, S, 3) uint8`` RGB. :func:`prepare_pairs` turns it into
``(B, 2, 3, N, N) float32`` (``N`` = model input size), resized with antialiasing, optionally
augmented, and normalised with the ImageNet mean/std. Every random transform is drawn once per
*pair* and applied identically to both frames, so augmentation never creates fake motion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mepipe.train.config import AugmentConfig

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def to_float(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 2, S, S, 3) uint8`` -> ``(B, 2, 3, size, size) float32`` in ``[0, 1]``."""
    b, k, s, _, c = frames.shape
    x = frames.permute(0, 1, 4, 2, 3).reshape(b * k, c, s, s).float().div_(255.0)
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.reshape(b, k, c, size, size)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation over the channel axis ``-3`` of ``(..., 3, H, W)`` in ``[0, 1]``."""
    mean = x.new_tensor(MEAN).view(3, 1, 1)
    std = x.new_tensor(STD).view(3, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize` (for pictures)."""
    mean = x.new_tensor(MEAN).view(3, 1, 1)
    std = x.new_tensor(STD).view(3, 1, 1)
    return x * std + mean


def _uniform(n: int, half_width: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1).mul_(half_width).to(device)


def affine_thetas(n: int, cfg: AugmentConfig, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Random ``(n, 2, 3)`` affine matrices (output -> input, normalised coordinates) for ``affine_grid``.

    Each combines a horizontal flip (probability ``cfg.flip``), a rotation of ``U(±rotate_deg)``, a zoom
    of ``U(1 ± scale)`` and a shift of ``U(±shift)`` image sides. Random numbers are drawn on the CPU
    from ``gen`` so results do not depend on the device.
    """
    flip = torch.where(torch.rand(n, generator=gen) < cfg.flip, -1.0, 1.0).to(device)
    ang = _uniform(n, math.radians(cfg.rotate_deg), gen, device)
    zoom = 1.0 + _uniform(n, cfg.scale, gen, device)
    tx = _uniform(n, 2 * cfg.shift, gen, device)
    ty = _uniform(n, 2 * cfg.shift, gen, device)
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], -1), torch.stack([sin * flip, cos, ty], -1)], -2)
    return theta


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation jitter, one draw per pair, on ``(B, 2, 3, H, W)`` in ``[0, 1]``."""
    b = x.shape[0]
    dev = x.device
    bright = (1.0 + _uniform(b, cfg.brightness, gen, dev)).view(b, 1, 1, 1, 1)
    contr = (1.0 + _uniform(b, cfg.contrast, gen, dev)).view(b, 1, 1, 1, 1)
    sat = (1.0 + _uniform(b, cfg.saturation, gen, dev)).view(b, 1, 1, 1, 1)
    x = x * bright
    grey = 0.299 * x[:, :, 0:1] + 0.587 * x[:, :, 1:2] + 0.114 * x[:, :, 2:3]
    # Contrast around the pair's mean grey level (shared by both frames).
    mean = grey.mean(dim=(1, 2, 3, 4), keepdim=True)
    x = (x - mean) * contr + mean
    grey = 0.299 * x[:, :, 0:1] + 0.587 * x[:, :, 1:2] + 0.114 * x[:, :, 2:3]
    x = (x - grey) * sat + grey
    return x.clamp_(0.0, 1.0)


def augment_pairs(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply one random geometric + colour transform per pair, identically to both frames.

    Args:
        x: ``(B, 2, 3, H, W) float32`` in ``[0, 1]``.
        cfg: augmentation settings.
        gen: CPU ``torch.Generator`` holding the augmentation stream (saved in checkpoints).

    Returns:
        ``(B, 2, 3, H, W) float32`` in ``[0, 1]``.
    """
    if not cfg.enabled:
        return x
    b, k, c, h, w = x.shape
    theta = affine_thetas(b, cfg, gen, x.device)
    grid = F.affine_grid(theta, [b, k * c, h, w], align_corners=False)
    x = F.grid_sample(
        x.reshape(b, k * c, h, w), grid, mode="bilinear", padding_mode="border", align_corners=False
    ).reshape(b, k, c, h, w)
    return colour_jitter(x, cfg, gen)


def prepare_pairs(
    frames: torch.Tensor,
    size: int,
    *,
    augment: AugmentConfig | None = None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 pair batch -> normalised model input.

    Args:
        frames: ``(B, 2, S, S, 3) uint8`` RGB on the training device.
        size: model input side N.
        augment: augmentation settings, or ``None`` for evaluation (no augmentation).
        gen: the augmentation generator (required when ``augment`` is given and enabled).

    Returns:
        ``(B, 2, 3, N, N) float32``, ImageNet-normalised; ``[:, 0]`` is ``I_t``, ``[:, 1]`` is ``I_{t+δ}``.
    """
    x = to_float(frames, size)
    if augment is not None and augment.enabled:
        if gen is None:
            raise ValueError("prepare_pairs: augmentation needs a torch.Generator")
        x = augment_pairs(x, augment, gen)
    return normalize(x)
