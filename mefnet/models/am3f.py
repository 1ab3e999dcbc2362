"""AM3F-FlowNet: Attention-based Multi-scale Multi-branch Flow Network.

Fu, Yang, Chen, Wei, "AM3F-FlowNet: Attention-Based Multi-Scale Multi-Branch Flow
Network", Entropy 25(7):1064, 2023. Only the abstract and the outline of the paper are
known (see ``docs/model.md``); everything below that the paper does not fix is a choice
made here, written down with its reason, and exposed as a constructor argument (= config
key) so an ablation can switch it.

Architecture (one branch per flow map, channel order u, v, optical strain)::

    x[:, k] --BranchTrunk--> [stage1 (H/2), stage2 (H/4), stage3 (H/8)]
            --MSFF---------> fused map (D, H/8, W/8)          D = widths[-1]
            --avg pool to a 4x4 grid--> map m_k (D, 4, 4)      (head="gap": global avg, (D))
    [m_u, m_v, m_strain] --MOFRW--> reweighted, flattened, concatenated (K * D * 16)
            --dropout, Linear--> logits

Choices where the paper is silent, and why:

- **Branch trunk**: three stride-2 3x3 conv/BN/ReLU stages (widths 8, 16, 32) reading
  the flow map directly. 28x28 is the common input, so three halvings (28 -> 14 -> 7
  -> 4) are the most it supports. A full-resolution stem (``stem_channels > 0``) is
  available but off by default: it made a training step about 1.4x slower on a CPU for
  a map that is already a smooth, low-resolution flow field. Each branch sees one map
  only, as the paper's "each branch learns one kind of flow information" asks.
- **Scales** are the trunk's stage outputs (a feature pyramid, as in FPN), not parallel
  kernels: the pyramid is free (the trunk computes it anyway) and gives receptive fields
  from local (H/2) to near-global (H/8).
- **MSFF**: at every scale CBAM spatial attention, then a 1x1 projection
  to D channels, average pooling to the coarsest grid, sum, batch norm and ReLU. Summing
  per-scale projections equals concatenation followed by one 1x1 convolution, but keeps
  one projection per scale, so the single-scale ablation uses a subset of the same
  weights. Adaptive pooling to the coarsest grid makes any input size work. The
  attention kernel is 3x3, not CBAM's 7x7: at 28x28 input the maps are 14, 7 and 4
  pixels wide, so a 7x7 kernel would span half to all of a map, and the 7x7 attention
  convolution alone took about 60% of a CPU training step (``attention_kernel: 7``
  restores CBAM's choice, e.g. for 128x128 inputs).
- **Residual MSFF** (``msff_residual: true``, off by default, on in the composite recipe
  ``experiment=megc2019_flows``): the fused map is added to the branch's last stage
  before the ReLU, and the batch norm's scale starts at zero (torchvision's
  ``zero_init_residual``), so an untrained MSFF passes the last stage through and
  training decides how much of the other scales and the attention to add. On the
  MEGC2019 development folds, MSFF as a replacement of the last stage lowered the mean
  inner-validation UF1 (0.7386, against 0.7543 without MSFF); as a residual it scored
  0.7433 (3 seeds each, see README).
- **Head: a coarse spatial grid, not global pooling.** The faces are aligned, so *where*
  the motion is (brows, eyes, mouth corners) is the main cue; global average pooling
  throws that away, where STSTNet and OFF-ApexNet keep it by flattening their last
  maps. Each branch's fused map is average-pooled to a fixed ``head_grid`` x
  ``head_grid`` grid (4: the native grid of a 28x28 input; any input size gives the
  same grid) and flattened. On the SMIC development set the global-pooling head
  (``head: gap``, kept as an ablation) scored far below STSTNet under the identical
  recipe (see README).
- **MOFRW** acts on the per-stream maps. Channel level: one SE block per stream
  (reduction 4), squeezing each map by global pooling and rescaling its channels. With
  ``head: gap`` it acts on the pooled descriptor, which is exact there
  (``GAP(SE(x)) == SE(GAP(x))``). Stream level: a small
  MLP on the concatenated descriptors gives one score per stream; a softmax over streams
  times the number of streams turns them into weights that average 1, so "off" and
  "uniform" have the same scale and the streams compete for importance. Channel
  weighting runs first, so the stream weights see the reweighted channels. With a single
  branch the softmax stream weight would be identically 1 (nothing to compete with), so
  no stream gate is built.
- **Fusion of branches**: concatenation of the reweighted, flattened streams, dropout (0.5, as
  STSTNet and OFF-ApexNet), one linear classifier. Concatenation keeps each stream's
  features apart for the classifier, where a sum would force a shared feature space.

Ablations (constructor arguments = config keys):

- ``branches``: any non-empty subset of ``["u", "v", "strain"]``.
- ``msff``: ``multi`` (all scales), ``single`` (the coarsest scale only, with its
  attention and projection), ``off`` (no module: the trunk's last stage is the branch
  output).
- ``msff_residual``: ``false`` (MSFF replaces the last stage) or ``true`` (added to it).
- ``spatial_attention``: ``false`` replaces every MSFF spatial attention by the identity.
- ``attention_init``: ``sigmoid`` (the gates of CBAM and SE-Net as published) or
  ``identity``: every spatial-attention and squeeze-and-excitation gate is
  ``2 * sigmoid`` of a zero-initialised last layer, so it multiplies by exactly 1 before
  training and may then damp or amplify (0 to 2). On the MEGC2019 development folds it
  left the mean inner-validation UF1 where it was (README, research run r11).
- ``mofrw``: ``both``, ``stream`` (stream-level only), ``channel`` (channel-level only),
  ``off`` (plain concatenation).
- ``head``: ``spatial`` (a ``head_grid`` x ``head_grid`` grid per stream) or ``gap``
  (global average pooling, one value per channel).

About 33k parameters with three classes at any input size; the width and depth do not
depend on ``input_size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mefnet.models.blocks import ConvBnAct, SpatialAttention, SqueezeExcitation

FLOW_MAPS: tuple[str, ...] = ("u", "v", "strain")
"""Input channel order of every backbone: channel i holds ``FLOW_MAPS[i]``."""

MSFF_MODES: tuple[str, ...] = ("multi", "single", "off")
MOFRW_MODES: tuple[str, ...] = ("both", "stream", "channel", "off")
HEAD_MODES: tuple[str, ...] = ("spatial", "gap")
ATTENTION_INITS: tuple[str, ...] = ("sigmoid", "identity")


def _require_choice(key: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"am3f: {key}={value!r} is not allowed; choose one of {', '.join(allowed)}"
        )
    return value


def _require_branches(branches: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(branches, str):
        branches = [branches]
    chosen = tuple(str(b) for b in branches)
    unknown = [b for b in chosen if b not in FLOW_MAPS]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"am3f: branches={list(chosen)!r} is not allowed; choose a non-empty subset "
            f"without repeats of {', '.join(FLOW_MAPS)}"
        )
    # Canonical order, so ["v", "u"] and ["u", "v"] build the same network.
    return tuple(b for b in FLOW_MAPS if b in chosen)


class BranchTrunk(nn.Module):
    """An optional full-resolution stem, then stride-2 stages; returns every stage's output."""

    def __init__(self, stem_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.stem: nn.Module = nn.Identity()
        if stem_channels > 0:
            self.stem = ConvBnAct(1, stem_channels, 3)
        channels = [max(stem_channels, 1), *widths]
        self.stages = nn.ModuleList(
            ConvBnAct(c_in, c_out, 3, stride=2)
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class MultiScaleFeatureFusion(nn.Module):
    """MSFF: spatial attention at every scale, projection, pooling to the coarsest grid, sum.

    ``scale_channels`` maps a scale name (``stage1``, ...) to its channel count; the last
    entry is the coarsest scale, whose grid the others are pooled to. Per-scale modules
    are keyed by scale name, so a single-scale MSFF holds a subset of the multi-scale
    weights under the same names.
    """

    def __init__(
        self,
        scale_channels: dict[str, int],
        out_channels: int,
        spatial_attention: bool = True,
        attention_kernel: int = 7,
        residual: bool = False,
        attention_identity_init: bool = False,
    ) -> None:
        super().__init__()
        self.scale_names = list(scale_channels)
        self.residual = residual
        self.attention = nn.ModuleDict(
            {
                name: SpatialAttention(attention_kernel, attention_identity_init)
                if spatial_attention else nn.Identity()
                for name in self.scale_names
            }
        )
        self.projection = nn.ModuleDict(
            {
                name: nn.Conv2d(channels, out_channels, 1, bias=False)
                for name, channels in scale_channels.items()
            }
        )
        self.norm = nn.BatchNorm2d(out_channels)
        if residual:
            # Zero-initialised scale of the fused term: at initialisation the module
            # passes the coarsest map through unchanged (torchvision's zero_init_residual).
            nn.init.zeros_(self.norm.weight)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused map; with ``residual=True`` added to the coarsest scale's map (the
        branch's last stage) before the ReLU."""
        grid = features[self.scale_names[-1]].shape[-2:]
        fused = None
        for name in self.scale_names:
            attended = self.attention[name](features[name])
            if attended.shape[-2:] != grid:
                # Pooling before the 1x1 projection is exact (both are linear and the
                # projection has no bias) and runs the projection on the small grid.
                attended = F.adaptive_avg_pool2d(attended, grid)
            projected = self.projection[name](attended)
            fused = projected if fused is None else fused + projected
        fused = self.norm(fused)
        if self.residual:
            fused = features[self.scale_names[-1]] + fused
        return F.relu(fused)


class FlowBranch(nn.Module):
    """One branch: trunk on one flow map, then MSFF (or nothing, when ``msff='off'``)."""

    def __init__(
        self,
        stem_channels: int,
        widths: Sequence[int],
        msff: str,
        spatial_attention: bool,
        attention_kernel: int,
        msff_residual: bool = False,
        attention_identity_init: bool = False,
    ) -> None:
        super().__init__()
        self.trunk = BranchTrunk(stem_channels, widths)
        names = [f"stage{i + 1}" for i in range(len(widths))]
        scale_channels = dict(zip(names, widths, strict=True))
        if msff == "single":
            scale_channels = {names[-1]: widths[-1]}
        self.msff: MultiScaleFeatureFusion | None = None
        if msff != "off":
            self.msff = MultiScaleFeatureFusion(
                scale_channels, widths[-1], spatial_attention, attention_kernel, msff_residual,
                attention_identity_init,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x)
        if self.msff is None:
            return features[-1]
        return self.msff({f"stage{i + 1}": f for i, f in enumerate(features)})


class MultiOpticalFlowReweighting(nn.Module):
    """MOFRW: channel-level (SE per stream) and stream-level (softmax over streams) weights.

    Takes one pooled descriptor ``(batch, C)`` per stream and returns their reweighted
    concatenation ``(batch, streams * C)``.
    """

    def __init__(
        self,
        streams: Sequence[str],
        channels: int,
        stream_level: bool = True,
        channel_level: bool = True,
        reduction: int = 4,
        identity_init: bool = False,
    ) -> None:
        super().__init__()
        self.streams = list(streams)
        self.channel_attention: nn.ModuleDict | None = None
        if channel_level:
            self.channel_attention = nn.ModuleDict(
                {name: SqueezeExcitation(channels, reduction, identity_init=identity_init)
                 for name in self.streams}
            )
        self.stream_gate: nn.Sequential | None = None
        # One stream: its softmax weight is identically 1, and a gate would be parameters
        # that never get a gradient; there is no stream level to apply.
        if stream_level and len(self.streams) > 1:
            total = channels * len(self.streams)
            hidden = max(4, total // reduction)
            self.stream_gate = nn.Sequential(
                nn.Linear(total, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, len(self.streams)),
            )

    def stream_weights(self, descriptors: torch.Tensor) -> torch.Tensor:
        """``(batch, streams)`` weights that average 1 over the streams."""
        assert self.stream_gate is not None
        return torch.softmax(self.stream_gate(descriptors), dim=1) * len(self.streams)

    def _channel_reweighted(self, descriptors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        parts = [descriptors[name] for name in self.streams]
        if self.channel_attention is not None:
            parts = [self.channel_attention[n](p) for n, p in zip(self.streams, parts, strict=True)]
        return parts

    @staticmethod
    def _pooled(part: torch.Tensor) -> torch.Tensor:
        return part.mean(dim=(2, 3)) if part.dim() == 4 else part

    def weights(self, descriptors: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The ``(batch, streams)`` stream weights :meth:`forward` applies to these
        descriptors (in ``self.streams`` order), or None when stream level is off.

        For inspection (``mefnet-pictures``); it recomputes what forward computes.
        """
        if self.stream_gate is None:
            return None
        parts = self._channel_reweighted(descriptors)
        return self.stream_weights(torch.cat([self._pooled(p) for p in parts], dim=1))

    def forward(self, descriptors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each stream is a pooled descriptor ``(batch, C)`` or a map ``(batch, C, h, w)``;
        the stream weights are computed from the pooled (reweighted) channels either way,
        and the output is the concatenation of the flattened, reweighted streams."""
        parts = self._channel_reweighted(descriptors)
        if self.stream_gate is None:
            return torch.cat([p.flatten(1) for p in parts], dim=1)
        weights = self.stream_weights(torch.cat([self._pooled(p) for p in parts], dim=1))
        return torch.cat([p.flatten(1) * weights[:, k:k + 1] for k, p in enumerate(parts)], dim=1)


class AM3FFlowNet(nn.Module):
    """AM3F-FlowNet; see the module docstring for the architecture and its choices."""

    model_name = "am3f"  # what mefnet-predict / -export print

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        input_size: int = 28,
        branches: Sequence[str] = FLOW_MAPS,
        msff: str = "multi",
        msff_residual: bool = False,
        spatial_attention: bool = True,
        attention_init: str = "sigmoid",
        mofrw: str = "both",
        stem_channels: int = 0,
        widths: Sequence[int] = (8, 16, 32),
        attention_kernel: int = 3,
        se_reduction: int = 4,
        dropout: float = 0.5,
        head: str = "spatial",
        head_grid: int = 4,
    ) -> None:
        super().__init__()
        if in_channels != len(FLOW_MAPS):
            raise ValueError(
                f"am3f: in_channels={in_channels} is not allowed; the input must stack "
                f"{', '.join(FLOW_MAPS)} as {len(FLOW_MAPS)} channels, one per branch"
            )
        self.branch_names = _require_branches(branches)
        self.msff = _require_choice("msff", msff, MSFF_MODES)
        self.head = _require_choice("head", head, HEAD_MODES)
        if int(head_grid) < 1:
            raise ValueError(f"am3f: head_grid={head_grid!r} is not allowed; choose a positive grid size")
        self.head_grid = int(head_grid)
        self.mofrw_mode = _require_choice("mofrw", mofrw, MOFRW_MODES)
        identity_init = _require_choice("attention_init", attention_init, ATTENTION_INITS) == "identity"
        if not isinstance(msff_residual, bool):
            raise ValueError(
                f"am3f: msff_residual={msff_residual!r} is not allowed; choose true or false"
            )
        if not isinstance(spatial_attention, bool):
            raise ValueError(
                f"am3f: spatial_attention={spatial_attention!r} is not allowed; choose true or false"
            )
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError("am3f: widths must list at least one stage width")
        self.input_size = input_size
        self.branches = nn.ModuleDict(
            {
                name: FlowBranch(
                    stem_channels, widths, msff, spatial_attention, attention_kernel, msff_residual,
                    identity_init,
                )
                for name in self.branch_names
            }
        )
        self.reweighting = MultiOpticalFlowReweighting(
            self.branch_names,
            widths[-1],
            stream_level=mofrw in ("both", "stream"),
            channel_level=mofrw in ("both", "channel"),
            reduction=se_reduction,
            identity_init=identity_init,
        )
        self.dropout = nn.Dropout(dropout)
        cells = self.head_grid ** 2 if self.head == "spatial" else 1
        self.classifier = nn.Linear(widths[-1] * cells * len(self.branch_names), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused, reweighted features ``(batch, branches * widths[-1] * cells)``
        (``cells`` = ``head_grid ** 2`` for the spatial head, 1 for ``gap``)."""
        maps = {name: branch(x[:, FLOW_MAPS.index(name)].unsqueeze(1)) for name, branch in self.branches.items()}
        if self.head == "gap":
            streams = {name: m.mean(dim=(2, 3)) for name, m in maps.items()}
        else:
            # A map already on the grid (a 28x28 input's 4x4) is its own average: skipping
            # the pooling gives the same values and, vmapped over many models, saves a
            # twentieth of a training step.
            grid = (self.head_grid, self.head_grid)
            streams = {name: m if tuple(m.shape[-2:]) == grid else F.adaptive_avg_pool2d(m, grid)
                       for name, m in maps.items()}
        return self.reweighting(streams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))
