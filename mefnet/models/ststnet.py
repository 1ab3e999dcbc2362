"""STSTNet: Shallow Triple Stream Three-dimensional CNN (Liong et al., FG 2019).

Input: u, v and optical strain stacked as a 3-channel map (28x28 in the paper).
Three parallel 3x3 convolutions with 3, 5 and 8 filters (padding 2), each followed by
ReLU, batch norm and 3x3 max-pooling (stride 3, padding 1); the 16 maps are
concatenated, 2x2 average-pooled, passed through dropout and one fully connected layer.
About 1.7k parameters at 28x28 with three classes.

Dropout sits after the 2x2 average pool (``dropout_position="pooled"``), or after each
branch's max-pool (``"branch"``), where the authors' published training script puts it.

The fully connected layer's width follows from ``input_size`` so that larger inputs run
without code changes (the paper only uses 28x28).
"""

from __future__ import annotations

import torch
from torch import nn


def _pooled_size(size: int) -> int:
    conv = size + 2 * 2 - 3 + 1  # 3x3 conv, padding 2
    pool = (conv + 2 * 1 - 3) // 3 + 1  # 3x3 max-pool, stride 3, padding 1
    return pool // 2  # 2x2 average pool


class STSTNet(nn.Module):
    """STSTNet baseline; see the module docstring for the architecture."""

    model_name = "ststnet"  # what mefnet-predict / -export print
    # engine=batched with vectorize=auto: run the members one after another, not vmapped
    # (its three wide 3x3 maps are faster looped on the CPU; README, Engines).
    batched_vectorize = False

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        input_size: int = 28,
        filters: tuple[int, int, int] = (3, 5, 8),
        dropout: float = 0.5,
        dropout_position: str = "pooled",
    ) -> None:
        super().__init__()
        if dropout_position not in ("pooled", "branch"):
            raise ValueError(f"ststnet: dropout_position='{dropout_position}' is not one of pooled, branch")
        self.dropout_position = dropout_position
        self.streams = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, f, kernel_size=3, padding=2),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(f),
                nn.MaxPool2d(kernel_size=3, stride=3, padding=1),
            )
            for f in filters
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.dropout = nn.Dropout(dropout)
        side = _pooled_size(input_size)
        self.fc = nn.Linear(sum(filters) * side * side, num_classes)
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout_position == "branch":
            x = self.pool(torch.cat([self.dropout(s(x)) for s in self.streams], dim=1))
        else:
            x = self.dropout(self.pool(torch.cat([s(x) for s in self.streams], dim=1)))
        return self.fc(torch.flatten(x, 1))
