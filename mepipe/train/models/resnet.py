"""A plain ResNet baseline on the onset/apex difference (``resnet-diff`` in the model registry).

The usual MER baseline against which the two-branch MIACNet is compared: one ResNet-18-style network
(four stages of two basic residual blocks, no attention, no position branch) fed with the difference
``I_apex - I_onset`` of the normalised pair. Plain torch (no torchvision). To match MIACNet's maps the
stem is a stride-2 3x3 convolution without max-pooling and the stages have strides ``(1, 2, 2, 2)``, so
the last feature map is ``N / 16`` on a side (112 -> 7x7). Global average pooling, dropout, a linear head.

Heat maps are class activation maps (CAM): the last feature map weighted by the head's weights of the
predicted class, min-max normalised per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """``conv3x3-BN-ReLU-conv3x3-BN`` + shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


@dataclass
class ResNetOutput:
    """A forward pass: ``logits`` ``(B, K)`` and the last feature map ``features`` ``(B, D, h, w)``."""

    logits: torch.Tensor
    features: torch.Tensor
    class_weights: torch.Tensor

    def heatmap(self) -> torch.Tensor:
        """``(B, h, w)`` in ``[0, 1]``: the class activation map of each sample's predicted class."""
        w = self.class_weights[self.logits.argmax(1)].detach().float()  # (B, D)
        m = torch.einsum("bd,bdhw->bhw", w, self.features.detach().float())
        lo = m.flatten(1).amin(1).view(-1, 1, 1)
        hi = m.flatten(1).amax(1).view(-1, 1, 1)
        return (m - lo) / (hi - lo).clamp_min(1e-8)


class ResNetDiff(nn.Module):
    """ResNet-18-style classifier of ``I_{t+δ} - I_t``.

    Args:
        num_classes: K.
        width: channels of the first stage; the stages have ``width * (1, 2, 4, 8)``.
        blocks: basic blocks per stage (ResNet-18: 2).
        dropout: dropout before the linear head.

    Input ``(B, 2, 3, N, N)`` float (normalised; ``[:, 0]`` = onset / ``I_t``), N a multiple of 16;
    output logits ``(B, K)``.
    """

    def __init__(self, num_classes: int, width: int = 16, blocks: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, cin = [], width
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    *[BasicBlock(cin if j == 0 else c, c, stride if j == 0 else 1) for j in range(blocks)]
                )
            )
            cin = c
        self.stages = nn.Sequential(*stages)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward_all(self, pair: torch.Tensor) -> ResNetOutput:
        """Full forward pass; see :class:`ResNetOutput`."""
        f = self.stages(self.stem(pair[:, 1] - pair[:, 0]))
        return ResNetOutput(self.head(self.drop(f.mean(dim=(2, 3)))), f, self.head.weight)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.forward_all(pair).logits
