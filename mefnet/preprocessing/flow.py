"""Optical flow between onset and apex, optical strain, and the network's input maps.

The maps every model receives are ``(3, size, size)`` float32: horizontal flow u,
vertical flow v and optical strain magnitude, in that channel order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class TVL1Params:
    """Parameters of OpenCV's Dual TV-L1 (Zach, Pock, Bischof 2007; Wedel et al. 2009).

    Defaults are OpenCV's. Names follow ``cv2.optflow.DualTVL1OpticalFlow_create``.
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def create(self) -> Any:
        return cv2.optflow.DualTVL1OpticalFlow_create(
            tau=self.tau,
            lambda_=self.lambda_,
            theta=self.theta,
            nscales=self.nscales,
            warps=self.warps,
            epsilon=self.epsilon,
            innnerIterations=self.inner_iterations,  # sic: OpenCV's keyword has three n's
            outerIterations=self.outer_iterations,
            scaleStep=self.scale_step,
            gamma=self.gamma,
            medianFiltering=self.median_filtering,
        )


@dataclass(frozen=True)
class FlowParams:
    """How the flow is computed: the algorithm and its parameters."""

    method: str = "tvl1"
    tvl1: TVL1Params = field(default_factory=TVL1Params)

    @classmethod
    def from_config(cls, cfg: Any) -> FlowParams:
        cfg = dict(cfg or {})
        tvl1 = dict(cfg.pop("tvl1", None) or {})
        if "lambda" in tvl1:
            tvl1["lambda_"] = tvl1.pop("lambda")
        method = cfg.pop("method", "tvl1")
        if cfg:
            raise ValueError(f"preprocessing.flow: unknown key(s) {sorted(cfg)}; expected method, tvl1")
        unknown = set(tvl1) - set(TVL1Params.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"preprocessing.flow.tvl1: unknown key(s) {sorted(unknown)}; expected "
                f"{sorted(TVL1Params.__dataclass_fields__)}"
            )
        return cls(method=method, tvl1=TVL1Params(**tvl1))

    def describe(self) -> dict:
        return asdict(self)


FLOW_METHODS = ("tvl1",)


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def compute_flow(onset: np.ndarray, apex: np.ndarray, params: FlowParams | None = None) -> np.ndarray:
    """Dense flow from ``onset`` to ``apex``: ``(H, W, 2)`` float32, [..., 0] = u (x), [..., 1] = v (y).

    A point at (x, y) in the onset frame is at (x + u, y + v) in the apex frame.
    """
    params = params or FlowParams()
    a, b = to_gray(onset), to_gray(apex)
    if a.shape != b.shape:
        raise ValueError(f"onset {a.shape} and apex {b.shape} frames differ in size")
    if params.method == "tvl1":
        # OpenCV's TV-L1 works on 8-bit or float images; float in 0..1 keeps its
        # default parameters meaningful (they are tuned for that range on 8-bit input too).
        return params.tvl1.create().calc(a, b, None)
    raise ValueError(f"unknown flow method '{params.method}'; available: {', '.join(FLOW_METHODS)}")


def optical_strain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Optical strain magnitude sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2).

    ``np.gradient`` returns the derivative along rows (d/dy) first, then along columns
    (d/dx); swapping them silently gives a different, wrong map.
    """
    u_y, u_x = np.gradient(u.astype(np.float64))
    v_y, v_x = np.gradient(v.astype(np.float64))
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


NORMALIZATIONS = ("minmax", "none", "standardize")


def normalize_maps(maps: np.ndarray, how: str) -> np.ndarray:
    """Per-map normalization of a ``(C, H, W)`` stack.

    ``minmax`` scales each map to 0..1 (what the public 28x28 ``norm_u_v_os`` images
    hold), ``standardize`` gives each map zero mean and unit variance, ``none`` keeps
    pixel units.
    """
    if how == "none":
        return maps.astype(np.float32)
    out = np.empty_like(maps, dtype=np.float32)
    for i, m in enumerate(maps):
        if how == "minmax":
            lo, hi = float(m.min()), float(m.max())
            out[i] = (m - lo) / (hi - lo) if hi > lo else 0.0
        elif how == "standardize":
            sd = float(m.std())
            out[i] = (m - m.mean()) / sd if sd > 0 else 0.0
        else:
            raise ValueError(f"unknown normalization '{how}'; expected one of {NORMALIZATIONS}")
    return out


def flow_maps(flow: np.ndarray, size: int) -> np.ndarray:
    """u, v and strain as a ``(3, size, size)`` stack, strain computed at full resolution.

    Resizing uses area averaging; u and v are rescaled so that they stay in pixels of the
    output grid (a 2 px motion on a 128 px face is 0.44 px at 28 px).
    """
    u, v = flow[..., 0], flow[..., 1]
    strain = optical_strain(u, v)
    h, w = u.shape
    sx, sy = size / w, size / h
    resize = lambda m: cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)  # noqa: E731
    return np.stack([resize(u) * sx, resize(v) * sy, resize(strain)]).astype(np.float32)
