"""MIACNet: a two-branch micro-action network (mepipe's interpretation; see shared/reference/method.md).

* Action branch ``E_act``: from the pair (``I_{t+δ} - I_t``, or both frames stacked) -> a stem and four
  residual stages with *cascaded spatial attention* -> action map ``A`` of shape
  ``(B, 8w, N/16, N/16)`` plus one attention map per stage (the heat maps).
* Position branch ``E_pos``: from ``I_t`` alone -> 16x16 patch embedding + a small transformer ->
  position map ``P`` of the same shape as ``A``.
* Fusion ``F = A + γ ⊙ P`` with a learned per-channel scale γ starting at 0 (or ``F = A + P``, or
  gated), flattened (or mean-pooled) -> linear head -> logits. With γ = 0 at the start, training begins
  from the action branch alone and takes from the position map only what training finds useful: with
  ``F = A + P`` from the start, the position map (the onset frame's appearance, the subject's too) cost
  UF1 under LOSO, most of all once MA2MI had pre-trained it (README, "Does MA2MI pre-training help?").

Input size N must be a multiple of 16 (112 -> 7x7 maps, 128 -> 8x8, 224 -> 14x14).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 16


def match_memory_format(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Give the 4-D input ``x`` the memory format of a conv ``weight`` (channels-last on CUDA runs)."""
    if (
        weight.dim() == 4
        and weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
    ):
        return x.contiguous(memory_format=torch.channels_last)
    return x


ATTENTION_INITS = ("positive", "random")


class SpatialAttention(nn.Module):
    """``σ(BN(conv1x1([mean_c(x); max_c(x)])))``: a ``(B, 1, H, W)`` map in ``(0, 1)``.

    Args:
        init: ``positive`` (default): both weights of the 1x1 conv start at 0.5, so every map starts
            by attending where the features are strong (where the face moves). ``random``: PyTorch's
            default init, under which each weight's sign is a coin flip; a negative pair makes a map
            suppress exactly the moving regions, and as the cascade multiplies four maps, how well an
            un-trained (or briefly trained) action branch works then depends on the seed.
    """

    def __init__(self, init: str = "positive") -> None:
        super().__init__()
        if init not in ATTENTION_INITS:
            raise ValueError(f"attention init must be one of {ATTENTION_INITS}, got {init!r}")
        self.conv = nn.Conv2d(2, 1, kernel_size=1, bias=False)
        if init == "positive":
            nn.init.constant_(self.conv.weight, 0.5)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.bn(self.conv(s)))


class ResidualAttentionBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut, ReLU, then (optionally) cascaded spatial attention.

    The block's attention map is multiplied by the previous block's map (max-pooled to this
    resolution), and the features are multiplied by the product.
    """

    def __init__(
        self, cin: int, cout: int, stride: int, attention: bool, attention_init: str = "positive"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.att = SpatialAttention(attention_init) if attention else None

    def forward(
        self, x: torch.Tensor, prev_att: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)) + self.short(x))
        if self.att is None:
            return y, None
        a = self.att(y)
        if prev_att is not None:
            a = a * F.adaptive_max_pool2d(prev_att, a.shape[-2:])
        return y * a, a


class ActionBranch(nn.Module):
    """``E_act``: pair -> action map ``(B, 8w, N/16, N/16)`` and the cascaded attention maps.

    Args:
        width: w; stages have ``w, 2w, 4w, 8w`` channels (strides 1, 2, 2, 2 after a stride-2 stem).
        action_input: ``diff`` (3 channels, ``I_{t+δ} - I_t``) or ``stack`` (6 channels).
        attention: cascaded spatial attention on (ablation switch).
        attention_init: ``positive`` or ``random`` (see :class:`SpatialAttention`).
    """

    def __init__(
        self,
        width: int = 16,
        action_input: str = "diff",
        attention: bool = True,
        attention_init: str = "positive",
    ) -> None:
        super().__init__()
        if action_input not in ("diff", "stack"):
            raise ValueError(f"action_input must be 'diff' or 'stack', got {action_input!r}")
        self.action_input = action_input
        cin = 3 if action_input == "diff" else 6
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(
            nn.Conv2d(cin, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        blocks, c = [], width
        for i, co in enumerate(chans):
            blocks.append(ResidualAttentionBlock(c, co, 1 if i == 0 else 2, attention, attention_init))
            c = co
        self.blocks = nn.ModuleList(blocks)
        # The cascade multiplies four sigmoid maps, which shrinks A by ~16x; normalising A keeps it on
        # the same scale as the position map P it is summed with.
        self.norm = nn.BatchNorm2d(c)
        self.out_channels = c

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Args: ``pair`` ``(B, 2, 3, N, N)`` normalised. Returns ``(A, [att_1..att_4])``; the
        attention maps are ``(B, 1, h_i, w_i)`` (empty list without attention)."""
        x = pair[:, 1] - pair[:, 0] if self.action_input == "diff" else pair.flatten(1, 2)
        x = self.stem(match_memory_format(x, self.stem[0].weight))
        att: torch.Tensor | None = None
        maps: list[torch.Tensor] = []
        for blk in self.blocks:
            x, att = blk(x, att)
            if att is not None:
                maps.append(att)
        return self.norm(x), maps


class PositionBranch(nn.Module):
    """``E_pos``: ``I_t`` -> position map ``(B, D, N/16, N/16)`` with a small patch transformer.

    Args:
        input_size: N (multiple of 16); fixes the number of learned positional embeddings.
        dim: D, the map channels (equal to the action map's channels).
        layers, heads: transformer depth and attention heads (pre-norm, GELU, MLP ratio 2).
        pos_input: ``resize`` (MMNet-like: ``I_t`` area-resized to the ``N/16`` grid, then a 1x1
            "patch" embedding, so the branch sees coarse layout, not identity detail) or ``patch``
            (16x16 patches embedded by a strided conv; more appearance detail, over-fits small sets).
    """

    def __init__(
        self,
        input_size: int = 112,
        dim: int = 128,
        layers: int = 2,
        heads: int = 4,
        pos_input: str = "resize",
    ) -> None:
        super().__init__()
        if input_size % STRIDE:
            raise ValueError(f"input_size must be a multiple of {STRIDE}, got {input_size}")
        if pos_input not in ("resize", "patch"):
            raise ValueError(f"pos_input must be 'resize' or 'patch', got {pos_input!r}")
        self.grid = input_size // STRIDE
        self.pos_input = pos_input
        k = 1 if pos_input == "resize" else STRIDE
        self.embed = nn.Conv2d(3, dim, kernel_size=k, stride=k)
        self.pos = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=2 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """``frame`` ``(B, 3, N, N)`` normalised -> ``(B, D, N/16, N/16)``."""
        if self.pos_input == "resize":
            frame = F.interpolate(frame, size=(self.grid, self.grid), mode="area")
        x = self.embed(match_memory_format(frame, self.embed.weight))
        b, d, h, w = x.shape
        tok = x.flatten(2).transpose(1, 2) + self.pos
        tok = self.norm(self.encoder(tok))
        return tok.transpose(1, 2).reshape(b, d, h, w)


@dataclass
class MIACNetOutput:
    """Everything a forward pass computes.

    Attributes:
        logits: ``(B, K)``.
        action: ``A`` ``(B, D, h, w)``.
        position: ``P`` ``(B, D, h, w)`` or ``None`` without the position branch.
        attention: per-stage attention maps ``(B, 1, h_i, w_i)`` (empty without attention).
    """

    logits: torch.Tensor
    action: torch.Tensor
    position: torch.Tensor | None
    attention: list[torch.Tensor]

    def heatmap(self) -> torch.Tensor:
        """``(B, h, w)`` in ``[0, 1]``: the last cascaded attention map, or (no attention) the
        channel-mean magnitude of ``A``, each min-max normalised per sample."""
        m = self.attention[-1][:, 0] if self.attention else self.action.abs().mean(dim=1)
        m = m.detach().float()
        lo = m.flatten(1).amin(1).view(-1, 1, 1)
        hi = m.flatten(1).amax(1).view(-1, 1, 1)
        return (m - lo) / (hi - lo).clamp_min(1e-8)


class MIACNet(nn.Module):
    """Micro-action classifier on an ``(I_t, I_{t+δ})`` pair.

    Args:
        num_classes: K.
        input_size: N (112, 128, 224, ...; multiple of 16).
        width: w of the action branch; maps have ``D = 8w`` channels.
        action_input: ``diff`` or ``stack`` (see :class:`ActionBranch`).
        position: use the position branch (ablation switch).
        attention: cascaded spatial attention (ablation switch).
        pos_layers, pos_heads, pos_input: position branch settings (see :class:`PositionBranch`).
        fusion: ``scale`` (``F = A + γ ⊙ P``, ``γ`` ``(1, D, 1, 1)`` learned, initialised to 0), ``sum``
            (``F = A + P``) or ``gate`` (``F = A + σ(conv1x1([A; P])) · P``).
        head: ``flatten`` or ``mean`` pooling before the linear layer.
        dropout: dropout before the linear layer.
        attention_init: initialisation of the spatial-attention convs (see :class:`SpatialAttention`).

    Input ``(B, 2, 3, N, N)`` float (normalised; ``[:, 0]`` = ``I_t``), output logits ``(B, K)``.
    The sub-modules are named ``act`` and ``pos`` like in :class:`~mepipe.train.models.ma2mi.MA2MI`,
    so pre-trained weights load by name.
    """

    def __init__(
        self,
        num_classes: int,
        input_size: int = 112,
        width: int = 16,
        action_input: str = "diff",
        position: bool = True,
        attention: bool = True,
        pos_layers: int = 2,
        pos_heads: int = 4,
        pos_input: str = "resize",
        fusion: str = "scale",
        head: str = "flatten",
        dropout: float = 0.2,
        attention_init: str = "positive",
    ) -> None:
        super().__init__()
        if fusion not in ("sum", "gate", "scale") or head not in ("flatten", "mean"):
            raise ValueError(f"fusion must be sum|gate|scale and head flatten|mean, got {fusion!r}, {head!r}")
        self.act = ActionBranch(width, action_input, attention, attention_init)
        dim = self.act.out_channels
        self.pos = PositionBranch(input_size, dim, pos_layers, pos_heads, pos_input) if position else None
        self.gate = nn.Conv2d(2 * dim, dim, 1) if (position and fusion == "gate") else None
        self.pos_scale = nn.Parameter(torch.zeros(1, dim, 1, 1)) if (position and fusion == "scale") else None
        grid = input_size // STRIDE
        self.head_kind = head
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim * grid * grid if head == "flatten" else dim, num_classes)

    def forward_all(self, pair: torch.Tensor) -> MIACNetOutput:
        """Full forward pass; see :class:`MIACNetOutput`."""
        a, maps = self.act(pair)
        p = self.pos(pair[:, 0]) if self.pos is not None else None
        f = a
        if p is not None and self.gate is not None:
            f = a + torch.sigmoid(self.gate(torch.cat([a, p], 1))) * p
        elif p is not None:
            f = a + (self.pos_scale * p if self.pos_scale is not None else p)
        z = f.flatten(1) if self.head_kind == "flatten" else f.mean(dim=(2, 3))
        return MIACNetOutput(self.head(self.drop(z)), a, p, maps)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.forward_all(pair).logits

    def pretrained_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes that MA2MI pre-training provides (``act.`` and, if present, ``pos.``)."""
        return ("act.", "pos.") if self.pos is not None else ("act.",)

    def early_parameters(self) -> list[nn.Parameter]:
        """Parameters of the stem, the first action stage and the patch embedding (frozen first when
        fine-tuning with ``optim.freeze_epochs``)."""
        mods: list[nn.Module] = [self.act.stem, self.act.blocks[0]]
        if self.pos is not None:
            mods.append(self.pos.embed)
        return [p for m in mods for p in m.parameters()]
