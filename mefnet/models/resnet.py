"""A small ResNet on the stacked flow maps: a sanity baseline.

Built from the basic residual block of He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016, at CIFAR-ResNet scale: a 3x3 stem, three stages (widths 16, 32,
64; the last two halve the resolution), global average pooling, dropout and one linear
layer. One block per stage by default (a ResNet-8) because the benchmarks hold a few
hundred clips; ``blocks_per_stage`` deepens it. Global pooling makes any input size work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mefnet.models.blocks import BasicBlock, ConvBnAct


class SmallResNet(nn.Module):
    """Single-stream residual CNN on u, v and optical strain stacked as channels."""

    model_name = "resnet"  # what mefnet-predict / -export print

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        input_size: int = 28,
        widths: Sequence[int] = (16, 32, 64),
        blocks_per_stage: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.input_size = input_size
        self.stem = ConvBnAct(in_channels, widths[0], 3)
        blocks: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(x, 1)))
