"""MA2MI pre-training: predict a near-future frame from ``I_t`` and a bottlenecked action code.

For a pair ``(I_t, I_{t+δ})`` (``(B, 2, 3, N, N)``, normalised):

* ``P_t = E_pos(I_t)`` and ``A = E_act(I_t, I_{t+δ})``, both ``(B, D, h, w)`` with ``h = w = N / 16``;
* action code ``C_Δ = squeeze(A)``: ``(B, k, h, w)`` with few channels ``k`` (the bottleneck stops
  ``C_Δ`` from simply carrying ``I_{t+δ}``);
* decoder ``D(P_t, C_Δ)`` -> predicted latent ``Ẑ`` ``(B, D, h, w)``;
* target ``Z = T(I_{t+δ})`` where ``T`` is an EMA copy of ``E_pos`` under stop-gradient (so the latent
  cannot collapse together with the predictor); loss ``MSE(Ẑ, Z)`` (``Z`` layer-normalised over
  channels by default), plus ``pixel_weight`` times the MSE of a low-resolution reconstruction of
  ``I_{t+δ}`` decoded from ``Ẑ``'s features (``pixel_goal``: the frame itself, the change
  ``I_{t+δ} - I_t``, or ``I_t`` warped by a decoded displacement field, the ``motion`` goal);
  ``target="pixel"`` keeps the pixel term alone (the training config's default, with ``pixel_goal="motion"``).

Transfer: :func:`transfer_state` keeps ``act.*`` and ``pos.*`` (``E_act``, ``E_pos``), which load into
:class:`~mepipe.train.models.miacnet.MIACNet` by name; the decoder and the target are dropped.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mepipe.train.models.miacnet import STRIDE, ActionBranch, PositionBranch

PIXEL_GOALS = ("frame", "change", "motion")
"""What the pixel term predicts (see :class:`MA2MI`'s ``pixel_goal``)."""


def warp(image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """``image`` ``(B, C, s, s)`` resampled at ``x + motion(x)``: ``motion`` ``(B, 2, s, s)`` holds (dx, dy)
    in pixels of the ``s x s`` grid (bilinear, border values outside). Differentiable in both."""
    b, _, h, w = image.shape
    ys = torch.linspace(-1.0, 1.0, h, device=image.device, dtype=image.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=image.device, dtype=image.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=image.device, dtype=image.dtype)
    grid = torch.stack([gx, gy], -1)[None] + motion.permute(0, 2, 3, 1) * scale
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class ConvBlock(nn.Module):
    """Residual ``conv3x3-BN-ReLU-conv3x3-BN`` + identity, ReLU (decoder block)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


@dataclass
class MA2MIOutput:
    """A pre-training forward pass.

    Attributes:
        loss: scalar total loss (float32).
        latent_loss, pixel_loss: the two terms (detached; 0 when a term is off).
        target_std: spread of the target latent over the batch (mean over positions/channels of the
            per-element std; detached). It falling towards 0 would signal a collapsed target.
        recon: ``(B, 3, s, s)`` low-resolution reconstruction of ``I_{t+δ}`` (normalised) or ``None``
            (with ``pixel_goal="change"``: the area-resized ``I_t`` plus the predicted change; with
            ``"motion"``: the area-resized ``I_t`` warped by the predicted displacement field).
        attention: the action branch's attention maps.
    """

    loss: torch.Tensor
    latent_loss: torch.Tensor
    pixel_loss: torch.Tensor
    target_std: torch.Tensor
    recon: torch.Tensor | None
    attention: list[torch.Tensor]


class MA2MI(nn.Module):
    """The MA2MI pre-training network (see the module docstring).

    Args:
        input_size: N, multiple of 16.
        width: action-branch width w (``D = 8w``), same meaning as in MIACNet.
        action_input, attention, pos_layers, pos_heads, pos_input, attention_init: as in MIACNet
            (must match for transfer).
        bottleneck: k, channels of ``C_Δ``.
        decoder_blocks: residual blocks in ``D``.
        ema: target momentum (``T <- ema * T + (1 - ema) * E_pos`` after each step).
        target: ``latent`` or ``pixel`` (pixel reconstruction only, no latent term).
        target_norm: layer-normalise ``Z`` over channels.
        pixel_weight: weight of the pixel term (0 and ``target=latent``: no pixel head).
        pixel_size: side s of the reconstruction.
        pixel_goal: ``frame`` (the pixel term reconstructs ``I_{t+δ}``) or ``change`` (it predicts
            ``I_{t+δ} - I_t`` at s x s, its MSE divided by the change's mean square, so that 1 means
            "no better than predicting no change"). A coarse ``E_pos`` (``pos_input=resize`` sees
            ``I_t`` at ``N/16`` pixels) cannot supply the appearance detail of ``I_{t+δ}``, so with
            ``frame`` most of the term is error that neither input can remove; ``change`` asks the
            action code only for what moved. ``motion``: the head predicts a displacement field
            ``(dx, dy)`` at s x s that warps area(``I_t``) into area(``I_{t+δ}``) (:func:`warp`), its MSE
            divided by that of area(``I_t``) itself (1 = no better than no motion): the action code
            carries *where and how the face moved*, and the appearance comes from ``I_t``. On
            stabilised crops (``align.mode: register``), where the head does not move, that is the
            facial action itself (README, "Does MA2MI pre-training help?").
        pixel_head: ``full`` (upsample the D-channel decoder features to s, then conv3x3 D->w, ReLU,
            conv3x3 w->3) or ``light`` (a 1x1 conv D->w first, then upsample, conv3x3 w->w, ReLU,
            conv3x3 w->3: the 3x3 convs at s x s run on w instead of D = 8w channels).
    """

    def __init__(
        self,
        input_size: int = 112,
        width: int = 16,
        action_input: str = "diff",
        attention: bool = True,
        pos_layers: int = 2,
        pos_heads: int = 4,
        pos_input: str = "resize",
        bottleneck: int = 4,
        decoder_blocks: int = 2,
        ema: float = 0.99,
        target: str = "latent",
        target_norm: bool = True,
        pixel_weight: float = 0.5,
        pixel_size: int = 32,
        pixel_head: str = "full",
        attention_init: str = "positive",
        pixel_goal: str = "frame",
    ) -> None:
        super().__init__()
        if pixel_goal not in PIXEL_GOALS:
            raise ValueError(f"pixel_goal must be one of {PIXEL_GOALS}, got {pixel_goal!r}")
        if target not in ("latent", "pixel"):
            raise ValueError(f"target must be 'latent' or 'pixel', got {target!r}")
        if pixel_head not in ("full", "light"):
            raise ValueError(f"pixel_head must be 'full' or 'light', got {pixel_head!r}")
        self.act = ActionBranch(width, action_input, attention, attention_init)
        dim = self.act.out_channels
        self.pos = PositionBranch(input_size, dim, pos_layers, pos_heads, pos_input)
        self.target_enc = copy.deepcopy(self.pos)
        for p in self.target_enc.parameters():
            p.requires_grad_(False)
        self.squeeze = nn.Sequential(nn.Conv2d(dim, bottleneck, 1), nn.BatchNorm2d(bottleneck))
        self.expand = nn.Conv2d(bottleneck, dim, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True)
        )
        self.decoder = nn.Sequential(*[ConvBlock(dim) for _ in range(decoder_blocks)])
        # the latent prediction only with the latent target (an unused layer stalls DDP's gradient sync)
        self.predict = nn.Conv2d(dim, dim, 1) if target == "latent" else None
        self.ema, self.target, self.target_norm = ema, target, target_norm
        self.pixel_weight = pixel_weight if target == "latent" else 1.0
        self.pixel_size, self.pixel_goal = pixel_size, pixel_goal
        self.pixel_head: nn.Module | None = None
        self.pixel_reduce: nn.Module | None = None
        if self.pixel_weight > 0:
            if pixel_head == "light":
                self.pixel_reduce = nn.Conv2d(dim, width, 1)
            cin = width if pixel_head == "light" else dim
            cout = 2 if pixel_goal == "motion" else 3  # motion: a displacement field (dx, dy)
            self.pixel_head = nn.Sequential(
                nn.Conv2d(cin, width, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(width, cout, 3, 1, 1)
            )
        self.grid = input_size // STRIDE

    def train(self, mode: bool = True) -> MA2MI:
        super().train(mode)
        self.target_enc.eval()  # the target never updates BN statistics / dropout from gradients
        return self

    @torch.no_grad()
    def update_target(self) -> None:
        """EMA step ``T <- ema * T + (1 - ema) * E_pos`` (parameters and buffers)."""
        for t, s in zip(self.target_enc.parameters(), self.pos.parameters(), strict=True):
            t.lerp_(s.detach(), 1.0 - self.ema)
        for t, s in zip(self.target_enc.buffers(), self.pos.buffers(), strict=True):
            t.copy_(s)

    def action_code(self, pair: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``C_Δ`` ``(B, k, h, w)`` and the attention maps for a pair batch ``(B, 2, 3, N, N)``."""
        a, maps = self.act(pair)
        return self.squeeze(a), maps

    def forward(self, pair: torch.Tensor) -> MA2MIOutput:
        """Pre-training loss for ``pair`` ``(B, 2, 3, N, N)`` (normalised, ``[:, 0]`` = ``I_t``)."""
        p_t = self.pos(pair[:, 0])
        code, maps = self.action_code(pair)
        h = self.decoder(self.fuse(torch.cat([p_t, self.expand(code)], 1)))
        zero = pair.new_zeros((), dtype=torch.float32)
        latent_loss, target_std = zero, zero
        if self.predict is not None:
            z_hat = self.predict(h).float()
            with torch.no_grad():
                z = self.target_enc(pair[:, 1]).float()
                if self.target_norm:
                    z = F.layer_norm(z.permute(0, 2, 3, 1), z.shape[1:2]).permute(0, 3, 1, 2)
            latent_loss = F.mse_loss(z_hat, z)
            target_std = z.std(dim=0, unbiased=False).mean()
        pixel_loss, recon = zero, None
        if self.pixel_head is not None:
            g = self.pixel_reduce(h) if self.pixel_reduce is not None else h
            up = F.interpolate(
                g, size=(self.pixel_size, self.pixel_size), mode="bilinear", align_corners=False
            )
            recon = self.pixel_head(up).float()
            goal, start = (
                F.interpolate(pair[:, i].float(), size=recon.shape[-2:], mode="area") for i in (1, 0)
            )
            if self.pixel_goal == "frame":
                pixel_loss = F.mse_loss(recon, goal)
            else:  # relative to predicting "no change" (I_t itself): 1.0 means the code explains none of it
                recon = warp(start, recon) if self.pixel_goal == "motion" else start + recon
                pixel_loss = F.mse_loss(recon, goal) / F.mse_loss(start, goal).clamp_min(1e-8)
        loss = latent_loss + self.pixel_weight * pixel_loss
        return MA2MIOutput(loss, latent_loss.detach(), pixel_loss.detach(), target_std, recon, maps)


def transfer_state(
    state: dict[str, torch.Tensor], prefixes: tuple[str, ...] = ("act.", "pos.")
) -> dict[str, torch.Tensor]:
    """The ``E_act`` / ``E_pos`` entries of an MA2MI state dict (``act.*``, ``pos.*``); the decoder,
    the bottleneck, the pixel head and the EMA target are dropped. Keys of a DDP-wrapped model
    (``module.`` prefix) are accepted."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if k.startswith(prefixes):
            out[k] = v
    return out
