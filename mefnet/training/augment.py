"""Flow-aware augmentation of training batches.

A batch holds, per clip, the maps ``(u, v, strain)`` of the onset->apex motion of a face.
Transforming the *face* (mirror it, shift it, zoom it, rotate it) transforms its motion,
and the maps of the transformed motion are not just the transformed images of the maps:
the flow vectors turn with the face. :class:`FlowAugment` produces the maps of the
transformed motion, so an augmented clip is a clip that could have been recorded:

* mirror (``hflip``): the maps are mirrored left-right and the horizontal flow changes
  sign (``u -> -u``; for maps min-max scaled to 0..1 that is ``u -> 1 - u``);
* shift (``translate``, pixels): the maps move with the face, the vectors are unchanged;
* zoom (``zoom``, relative): the maps are resampled about the centre and the vectors
  scale with the zoom (for min-max scaled maps the scale cancels out: nothing to do);
* rotation (``rotate``, degrees): the maps turn with the face and the vectors turn by
  the same angle. Exact only on unscaled maps (``preprocessing.normalize=none``):
  per-map min-max scaling loses the zero of each flow component, so rotating scaled maps
  is refused.

Optical strain is the magnitude of the strain tensor: it does not depend on the
direction of the axes (mirror, rotation) or on a uniform zoom, so it is only resampled.
Pixels shifted in from outside the face repeat the border (``padding_mode="border"``).
Each clip of a batch draws its own transform from torch's global generator (seeded by
the run's seed), so training stays deterministic. Prediction never augments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

SCALES = ("minmax", "none", "standardize")


class FlowAugment(nn.Module):
    """Random flow-consistent transforms of ``(batch, 3, H, W)`` maps (u, v, strain).

    Args:
        hflip: probability of mirroring a clip (0.5 mirrors half of them).
        translate: largest shift in pixels, drawn uniformly in each direction.
        zoom: largest relative zoom; the factor is drawn uniformly in ``1 +- zoom``.
        rotate: largest rotation in degrees, drawn uniformly in ``+- rotate``.
        scale: how the maps were normalised (``preprocessing.normalize``): ``minmax``
            (each map scaled to 0..1), ``none`` (raw flow in pixels) or ``standardize``.
    """

    def __init__(self, hflip: float = 0.0, translate: float = 0.0, zoom: float = 0.0,
                 rotate: float = 0.0, scale: str = "minmax") -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"augment.scale: '{scale}' is not one of {', '.join(SCALES)}")
        for name, value in (("hflip", hflip), ("translate", translate), ("zoom", zoom), ("rotate", rotate)):
            if not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(f"augment.{name}: {value} must be a number >= 0")
        if hflip > 1:
            raise ValueError(f"augment.hflip: {hflip} is a probability and must be in 0..1")
        if zoom >= 1:
            raise ValueError(f"augment.zoom: {zoom} must be below 1 (the zoom factor is drawn in 1 +- zoom)")
        if rotate and scale != "none":
            raise ValueError(
                f"augment.rotate needs unscaled flow maps (preprocessing.normalize=none); with "
                f"normalize={scale} the zero of each flow component is lost and the vectors cannot be turned"
            )
        self.hflip, self.translate, self.zoom, self.rotate = float(hflip), float(translate), float(zoom), float(rotate)
        self.scale = scale

    @property
    def active(self) -> bool:
        return any((self.hflip, self.translate, self.zoom, self.rotate))

    def mirror(self, x: torch.Tensor) -> torch.Tensor:
        """The maps of the mirrored face."""
        flipped = x.flip(-1)
        u = 1.0 - flipped[:, :1] if self.scale == "minmax" else -flipped[:, :1]
        return torch.cat([u, flipped[:, 1:]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.active:
            return x
        n = len(x)
        if self.hflip:
            chosen = torch.rand(n, device=x.device) < self.hflip
            x = torch.where(chosen[:, None, None, None], self.mirror(x), x)
        if self.translate or self.zoom or self.rotate:
            shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * self.translate
            factor = 1 + (torch.rand(n, device=x.device) * 2 - 1) * self.zoom
            angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(self.rotate)
            x = self.transform(x, shift, factor, angle)
        return x

    def transform(self, x: torch.Tensor, shift: torch.Tensor, factor: torch.Tensor,
                  angle: torch.Tensor) -> torch.Tensor:
        """The maps of the face moved by ``shift`` (pixels, x then y), zoomed by ``factor``
        about the centre and turned by ``angle`` (radians, counter-clockwise on screen
        with y pointing down), one transform per clip."""
        n, _, h, w = x.shape
        cos, sin = torch.cos(angle), torch.sin(angle)
        # Output pixel p (normalised coords) samples the input at A^-1 (p - t), where the
        # face transform is p_out = s * R * p_in + t.
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = cos / factor
        theta[:, 0, 1] = sin / factor * (h / w)
        theta[:, 1, 0] = -sin / factor * (w / h)
        theta[:, 1, 1] = cos / factor
        tx, ty = shift[:, 0] * 2 / w, shift[:, 1] * 2 / h
        theta[:, 0, 2] = -(theta[:, 0, 0] * tx + theta[:, 0, 1] * ty)
        theta[:, 1, 2] = -(theta[:, 1, 0] * tx + theta[:, 1, 1] * ty)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.scale == "minmax":
            return out  # no rotation here (refused); a zoom's vector scale cancels in min-max maps
        u, v = out[:, 0], out[:, 1]
        s, c = sin[:, None, None], cos[:, None, None]
        f = factor[:, None, None] if self.scale == "none" else 1.0
        # Vectors turn with the face (screen coordinates, y down: the same matrix as the points).
        u2 = f * (c * u - s * v)
        v2 = f * (s * u + c * v)
        return torch.cat([u2[:, None], v2[:, None], out[:, 2:]], dim=1)


def mirror_averaged(probabilities: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    mirror: FlowAugment | None) -> torch.Tensor:
    """Test-time mirroring, the one implementation of it: ``probabilities(x)`` averaged with
    ``probabilities`` of the mirrored face's maps when ``mirror`` is given (a face and its
    mirror image show the same expression, and action units are recorded without their
    side), else ``probabilities(x)`` alone. Used by the training modules' predictions and
    by a loaded model file, so a model predicts the same after it is saved."""
    probs = probabilities(x)
    if mirror is not None:
        probs = (probs + probabilities(mirror.mirror(x))) / 2
    return probs
