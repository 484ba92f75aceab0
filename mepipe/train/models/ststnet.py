"""STSTNet: the shallow triple-stream network on onset -> apex optical flow (``ststnet`` in the registry).

Written from the description of Liong, Gan, See, Khor and Huang, "Shallow Triple Stream
Three-dimensional CNN (STSTNet) for Micro-expression Recognition" (FG 2019, arXiv 1902.03634), the
flow-based baseline of the MEGC2019 composite: the input is one ``28 x 28 x 3`` image per clip holding
the horizontal flow ``u``, the vertical flow ``v`` and the optical strain of the onset -> apex motion,
each channel min-max normalised per sample (:data:`mepipe.flow.STSTNET_INPUT`). Three streams look at
it in parallel, each a 3x3 convolution (3, 5 and 8 filters, "same" padding) followed by ReLU, batch
normalisation and 3x3 max-pooling with stride 3 (28 -> 10); the 16 maps are concatenated, average-pooled
2x2 (10 -> 5) and flattened (400 values) into one linear layer giving the class scores. The paper
treats the three flow channels as the "three dimensions" of its 3D input; the convolutions are 2D over
the image with the channels as depth, as here. ``dropout`` before the linear layer (``model.dropout``)
is mepipe's addition; ``0`` gives the paper's network.

Heat maps: the linear layer scores the flattened map, so a class score is exactly the sum over the
10 x 10 grid (before the average pooling) of each position's contribution ``sum_d W_c[d, y//2, x//2]
* f[d, y, x] / 4`` plus the bias. :meth:`STSTNetOutput.heatmap` is that contribution map for the
predicted class (a class activation map for a flattening head), min-max normalised per sample; it lies
on the 28 x 28 flow image, which covers the whole aligned crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mepipe.flow import STSTNET_INPUT, FlowInput


@dataclass
class STSTNetOutput:
    """A forward pass: ``logits`` ``(B, K)``, the concatenated 10 x 10 maps ``features`` ``(B, 16, 10, 10)``
    and the linear layer's weights ``class_weights`` ``(K, 16, 5, 5)``."""

    logits: torch.Tensor
    features: torch.Tensor
    class_weights: torch.Tensor

    def contributions(self) -> torch.Tensor:
        """``(B, 10, 10)``: each grid position's share of the predicted class's score (they sum to the
        score minus the bias)."""
        w = self.class_weights[self.logits.argmax(1)].detach().float()  # (B, D, 5, 5)
        w = w.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) / 4.0  # (B, D, 10, 10)
        return (w * self.features.detach().float()).sum(1)

    def heatmap(self) -> torch.Tensor:
        """``(B, 10, 10)`` in ``[0, 1]``: :meth:`contributions`, min-max normalised per sample."""
        m = self.contributions()
        lo = m.flatten(1).amin(1).view(-1, 1, 1)
        hi = m.flatten(1).amax(1).view(-1, 1, 1)
        return (m - lo) / (hi - lo).clamp_min(1e-8)


class STSTNet(nn.Module):
    """Three parallel shallow streams on a flow image.

    Args:
        num_classes: K.
        in_channels: flow channels C (3: u, v, strain).
        filters: filters of the three streams.
        dropout: dropout before the linear layer (0: the paper's network).
        flow_input: how the input is made (default :data:`mepipe.flow.STSTNET_INPUT`); the trainer sets
            the one it used, so that ``model.pt`` and ``mepipe predict`` make the same input.

    Input ``(B, C, 28, 28)`` float (``[0, 1]`` after min-max); output logits ``(B, K)``.
    """

    input_side = 28

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        filters: Sequence[int] = (3, 5, 8),
        dropout: float = 0.0,
        flow_input: FlowInput = STSTNET_INPUT,
    ) -> None:
        super().__init__()
        self.flow_input = flow_input
        self.streams = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, f, 3, padding=1),
                nn.ReLU(),
                nn.BatchNorm2d(f),
                nn.MaxPool2d(3, stride=3, padding=1),
            )
            for f in filters
        )
        self.drop = nn.Dropout(dropout)
        self.width = int(sum(filters))
        self.head = nn.Linear(self.width * 5 * 5, num_classes)

    def forward_all(self, x: torch.Tensor) -> STSTNetOutput:
        """Full forward pass; see :class:`STSTNetOutput`."""
        if x.ndim != 4 or x.shape[-2:] != (self.input_side, self.input_side):
            raise ValueError(
                f"STSTNet takes (B, C, 28, 28) flow images, got {tuple(x.shape)}; the trainer makes them "
                "from onset/apex pairs (mepipe.train.flowdata)"
            )
        f = torch.cat([s(x) for s in self.streams], dim=1)  # (B, 16, 10, 10)
        pooled = F.avg_pool2d(f, 2)  # (B, 16, 5, 5)
        logits = self.head(self.drop(pooled.flatten(1)))
        weights = self.head.weight.view(-1, self.width, 5, 5)
        return STSTNetOutput(logits, f, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits
