"""Reusable building blocks shared by the backbones (timm style: one block, one paper).

- :class:`SpatialAttention`: the spatial half of CBAM (Woo et al., ECCV 2018).
- :class:`SqueezeExcitation`: channel attention of SE-Net (Hu et al., CVPR 2018).
- :class:`ConvBnAct`: convolution, batch norm, ReLU.
- :class:`BasicBlock`: the two-convolution residual block of ResNet (He et al., CVPR 2016).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBnAct(nn.Sequential):
    """``Conv2d -> BatchNorm2d -> ReLU`` with "same"-style padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _zero_init(layer: nn.Module) -> None:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


def _gate(scores: torch.Tensor, identity_init: bool) -> torch.Tensor:
    """An attention gate: ``sigmoid`` in (0, 1), or ``2 * sigmoid`` in (0, 2), which is
    1 where the scores are 0 (the zero-initialised layer before training), so an
    untrained attention passes its input through and training moves it either way."""
    return 2 * torch.sigmoid(scores) if identity_init else torch.sigmoid(scores)


class SpatialAttention(nn.Module):
    """Spatial attention of CBAM.

    Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018.
    The channel-wise mean and max of the input (two maps) go through one
    ``kernel_size x kernel_size`` convolution and a sigmoid; the result (one weight per
    pixel, shared by all channels) rescales the input. It adds ``2 * k * k + 1``
    parameters and works at any spatial size.
    """

    def __init__(self, kernel_size: int = 7, identity_init: bool = False) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SpatialAttention kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.identity_init = identity_init
        if identity_init:
            _zero_init(self.conv)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(batch, 1, H, W)`` weights that :meth:`forward` applies: in (0, 1), or
        in (0, 2) and exactly 1 before training with ``identity_init``."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return _gate(self.conv(pooled), self.identity_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation channel attention.

    Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018. Squeeze: global average
    pooling to one value per channel; excitation: ``Linear(C, C/r) -> ReLU ->
    Linear(C/r, C) -> sigmoid``; the input channels are rescaled by the result.

    Accepts a feature map ``(batch, C, H, W)`` or an already pooled descriptor
    ``(batch, C)``. On a descriptor the squeeze is the identity, so
    ``GAP(SE(x)) == SE(GAP(x))`` exactly: a network that pools right after the
    attention can apply it to the cheap descriptor instead of the map.
    """

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 4,
                 identity_init: bool = False) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.identity_init = identity_init
        self.excite = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
        )
        if identity_init:
            _zero_init(self.excite[-1])

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(batch, C)`` weights that :meth:`forward` applies: in (0, 1), or in
        (0, 2) and exactly 1 before training with ``identity_init``."""
        squeezed = x.mean(dim=(2, 3)) if x.dim() == 4 else x
        return _gate(self.excite(squeezed), self.identity_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.channel_weights(x)
        if x.dim() == 4:
            weights = weights[:, :, None, None]
        return x * weights


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and an identity shortcut.

    He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016. When
    the stride or width changes, the shortcut is a strided 1x1 convolution with batch
    norm (the paper's option B).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))
