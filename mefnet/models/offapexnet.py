"""OFF-ApexNet: Optical Flow Features from Apex frame Network (Gan et al., 2019).

Gan, Liong, Yau, Huang, Tan, "OFF-ApexNet on micro-expression recognition system",
Signal Processing: Image Communication 74:129-139, 2019. Two streams, one on the
horizontal flow u and one on the vertical flow v (optical strain is not used). Each
stream: 5x5 convolution (6 filters) -> ReLU -> 2x2 max-pool -> 5x5 convolution (16
filters) -> ReLU -> 2x2 max-pool ("same" padding). The two 16x7x7 maps (at 28x28 input)
are flattened, concatenated and classified by two fully connected layers of 1024 units
with ReLU and dropout, then a linear output layer.

To scale beyond 28x28 without the fully connected layers growing with the input, each
stream's map is average-pooled to ``pooled_size`` (7, the paper's 28x28 map, where the
pooling is the identity) before flattening.
"""

from __future__ import annotations

import torch
from torch import nn

FLOW_CHANNELS = {"u": 0, "v": 1}


def _stream(filters: tuple[int, int], pooled_size: int) -> nn.Sequential:
    first, second = filters
    return nn.Sequential(
        nn.Conv2d(1, first, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(first, second, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(pooled_size),
        nn.Flatten(),
    )


class OFFApexNet(nn.Module):
    """OFF-ApexNet baseline; see the module docstring. Reads channels 0 (u) and 1 (v)."""

    model_name = "offapexnet"  # what mefnet-predict / -export print

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        input_size: int = 28,
        filters: tuple[int, int] = (6, 16),
        hidden: int = 1024,
        dropout: float = 0.5,
        pooled_size: int = 7,
    ) -> None:
        super().__init__()
        if in_channels < 2:
            raise ValueError(
                f"offapexnet: in_channels={in_channels} is not allowed; it reads u (channel 0) "
                "and v (channel 1), so at least 2 channels are needed"
            )
        filters = (int(filters[0]), int(filters[1]))
        self.input_size = input_size
        self.streams = nn.ModuleDict(
            {name: _stream(filters, pooled_size) for name in FLOW_CHANNELS}
        )
        features = len(FLOW_CHANNELS) * filters[1] * pooled_size * pooled_size
        self.classifier = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [
            stream(x[:, FLOW_CHANNELS[name]].unsqueeze(1)) for name, stream in self.streams.items()
        ]
        return self.classifier(torch.cat(features, dim=1))
