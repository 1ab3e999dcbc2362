"""Optical flow between onset and apex, optical strain, and the network's input maps.

The maps every model receives are ``(3, size, size)`` float32: horizontal flow u,
vertical flow v and optical strain magnitude, in that channel order.

Three flow methods (``preprocessing.flow.method``), each with its parameters in the
config (``conf/flow/*.yaml``):

``tvl1``
    OpenCV's Dual TV-L1 (:class:`TVL1Params`), the method of the published micro-expression
    work. :data:`TVL1_FAST` is the default preset: the image pyramid of the IPOL reference
    implementation (zoom factor 0.5, 5 scales) with fewer iterations; it lands closer to
    the IPOL flow than OpenCV's default parameters, at a fifth of their time.
``dis``
    OpenCV's Dense Inverse Search (:class:`DISParams`): a hundred times faster, coarser.
``farneback``
    OpenCV's Farneback polynomial expansion (:class:`FarnebackParams`).

DIS and Farneback are there for speed comparisons; on micro-expressions' sub-pixel
motions they stay further from the IPOL reference (see the README's preprocessing
section for the measured figures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mefnet.schema import NORMALIZATIONS  # noqa: F401  (re-exported: the schema owns the list)


def _require(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _require_int(value: Any, name: str, minimum: int) -> None:
    try:
        ok = not isinstance(value, bool) and float(value).is_integer() and value >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class TVL1Params:
    """Parameters of OpenCV's Dual TV-L1 (Zach, Pock, Bischof 2007; Wedel et al. 2009).

    Defaults are OpenCV's (preset ``conf/flow/tvl1.yaml``); :data:`TVL1_FAST` is the
    faster, IPOL-like default preset. Names follow ``cv2.optflow.DualTVL1OpticalFlow_create``.
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

    def __post_init__(self) -> None:
        _require(self.tau > 0, "tau", self.tau, "> 0")
        _require(self.lambda_ > 0, "lambda", self.lambda_, "> 0")
        _require(self.theta > 0, "theta", self.theta, "> 0")
        _require(self.epsilon > 0, "epsilon", self.epsilon, "> 0")
        _require(0 < self.scale_step < 1, "scale_step", self.scale_step, "between 0 and 1")
        _require(self.gamma >= 0, "gamma", self.gamma, ">= 0")
        for name in ("nscales", "warps", "inner_iterations", "outer_iterations"):
            _require_int(getattr(self, name), name, 1)
        _require_int(self.median_filtering, "median_filtering", 1)
        _require(self.median_filtering % 2 == 1, "median_filtering", self.median_filtering,
                 "an odd number (1 = no median filter)")

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

    def calc(self, onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
        return self.create().calc(onset, apex, None)


#: The default TV-L1 preset (``conf/flow/tvl1_fast.yaml``): the IPOL reference's pyramid
#: (zoom factor 0.5, 5 scales) with 2 warps x 3 outer x 10 inner iterations. Measured
#: against OpenCV's defaults it is closer to the IPOL flow on the CASME II pair (0.064 vs
#: 0.074 px mean endpoint error), far better on Sintel alley_1 (0.28 vs 0.70 px), and about
#: 5 times faster (README, "Preprocessing").
TVL1_FAST = TVL1Params(nscales=5, scale_step=0.5, warps=2, outer_iterations=3, inner_iterations=10)


@dataclass(frozen=True)
class DISParams:
    """OpenCV's Dense Inverse Search (Kroeger et al. 2016). Defaults: OpenCV's ``medium`` preset."""

    finest_scale: int = 1
    patch_size: int = 8
    patch_stride: int = 3
    gradient_descent_iterations: int = 25
    variational_refinement_iterations: int = 5
    variational_refinement_alpha: float = 20.0
    variational_refinement_delta: float = 5.0
    variational_refinement_gamma: float = 10.0
    use_mean_normalization: bool = True
    use_spatial_propagation: bool = True

    def __post_init__(self) -> None:
        _require_int(self.finest_scale, "finest_scale", 0)
        _require_int(self.patch_size, "patch_size", 1)
        _require_int(self.patch_stride, "patch_stride", 1)
        _require(self.patch_stride <= self.patch_size, "patch_stride", self.patch_stride,
                 f"<= patch_size ({self.patch_size})")
        _require_int(self.gradient_descent_iterations, "gradient_descent_iterations", 1)
        _require_int(self.variational_refinement_iterations, "variational_refinement_iterations", 0)
        for name in ("variational_refinement_alpha", "variational_refinement_delta",
                     "variational_refinement_gamma"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), ">= 0")

    def create(self) -> Any:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        dis.setFinestScale(int(self.finest_scale))
        dis.setPatchSize(int(self.patch_size))
        dis.setPatchStride(int(self.patch_stride))
        dis.setGradientDescentIterations(int(self.gradient_descent_iterations))
        dis.setVariationalRefinementIterations(int(self.variational_refinement_iterations))
        dis.setVariationalRefinementAlpha(float(self.variational_refinement_alpha))
        dis.setVariationalRefinementDelta(float(self.variational_refinement_delta))
        dis.setVariationalRefinementGamma(float(self.variational_refinement_gamma))
        dis.setUseMeanNormalization(bool(self.use_mean_normalization))
        dis.setUseSpatialPropagation(bool(self.use_spatial_propagation))
        return dis

    def calc(self, onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
        return self.create().calc(_to_uint8(onset), _to_uint8(apex), None)


@dataclass(frozen=True)
class FarnebackParams:
    """OpenCV's Farneback (2003) polynomial-expansion flow; defaults are the usual ones."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    gaussian: bool = False
    """Gaussian instead of box window (OPTFLOW_FARNEBACK_GAUSSIAN)."""

    def __post_init__(self) -> None:
        _require(0 < self.pyr_scale < 1, "pyr_scale", self.pyr_scale, "between 0 and 1")
        _require_int(self.levels, "levels", 1)
        _require_int(self.winsize, "winsize", 1)
        _require_int(self.iterations, "iterations", 1)
        _require(self.poly_n in (5, 7), "poly_n", self.poly_n, "5 or 7")
        _require(self.poly_sigma > 0, "poly_sigma", self.poly_sigma, "> 0")

    def calc(self, onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(
            _to_uint8(onset), _to_uint8(apex), None, pyr_scale=self.pyr_scale, levels=int(self.levels),
            winsize=int(self.winsize), iterations=int(self.iterations), poly_n=int(self.poly_n),
            poly_sigma=self.poly_sigma, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN if self.gaussian else 0,
        )


FLOW_METHODS = ("tvl1", "dis", "farneback")


@dataclass(frozen=True)
class FlowParams:
    """How the flow is computed: the method and the parameters of each method."""

    method: str = "tvl1"
    tvl1: TVL1Params = TVL1_FAST
    dis: DISParams = field(default_factory=DISParams)
    farneback: FarnebackParams = field(default_factory=FarnebackParams)

    def __post_init__(self) -> None:
        if self.method not in FLOW_METHODS:
            raise ValueError(
                f"preprocessing.flow.method: '{self.method}' is not one of {', '.join(FLOW_METHODS)}"
            )

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | None) -> FlowParams:
        """From ``preprocessing.flow``: ``method`` plus a block per method.

        A method's block may be partial or absent: missing keys keep the values of
        ``FlowParams()`` (for ``tvl1`` the :data:`TVL1_FAST` preset). The presets in
        ``conf/flow/`` spell every key.
        """
        values = dict(block or {})
        unknown = sorted(set(values) - {"method", *FLOW_METHODS})
        if unknown:
            raise ValueError(
                f"preprocessing.flow: unknown key(s) {unknown}; expected method, {', '.join(FLOW_METHODS)}"
            )
        method = values.get("method", "tvl1")
        if method not in FLOW_METHODS:
            raise ValueError(
                f"preprocessing.flow.method: '{method}' is not one of {', '.join(FLOW_METHODS)}"
            )
        default = cls()
        blocks = {
            name: _params_from(getattr(default, name), values.get(name), f"preprocessing.flow.{name}")
            for name in FLOW_METHODS
            if values.get(name) is not None
        }
        return cls(method=method, **blocks)

    @property
    def params(self) -> TVL1Params | DISParams | FarnebackParams:
        """The parameters of the selected method."""
        return getattr(self, self.method)

    def describe(self) -> dict:
        """The method and its parameters (the other methods' do not change the flow)."""
        return {"method": self.method, self.method: asdict(self.params)}


def _params_from(base: Any, block: Mapping[str, Any], where: str) -> Any:
    """``base`` with the keys of ``block`` replaced; errors name the block, the key and what was expected."""
    values = dict(block)
    defaults = {f.name: f.default for f in fields(base)}
    if "lambda" in values and "lambda_" in defaults:  # YAML spells it lambda (a Python keyword)
        values["lambda_"] = values.pop("lambda")
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        shown = sorted("lambda" if n == "lambda_" else n for n in defaults)
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {shown}")
    for name, value in values.items():
        kind = type(defaults[name])
        shown = "lambda" if name == "lambda_" else name
        if kind is bool and not isinstance(value, bool):
            raise ValueError(f"{where}.{shown}: expected true or false, got {value!r}")
        if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{where}.{shown}: expected a number, got {value!r}")
    try:
        return replace(base, **values)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """A frame in grey levels (a frame that is already grey is returned as it is)."""
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def compute_flow(onset: np.ndarray, apex: np.ndarray, params: FlowParams | None = None) -> np.ndarray:
    """Dense flow from ``onset`` to ``apex``: ``(H, W, 2)`` float32, [..., 0] = u (x), [..., 1] = v (y).

    A point at (x, y) in the onset frame is at (x + u, y + v) in the apex frame. Frames
    are converted to grey (DIS and Farneback need 8-bit input).
    """
    params = params or FlowParams()
    a, b = to_gray(onset), to_gray(apex)
    if a.shape != b.shape:
        raise ValueError(f"onset {a.shape} and apex {b.shape} frames differ in size")
    return params.params.calc(a, b)


def optical_strain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Optical strain magnitude sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2).

    ``np.gradient`` returns the derivative along rows (d/dy) first, then along columns
    (d/dx); swapping them silently gives a different, wrong map.
    """
    u_y, u_x = np.gradient(u.astype(np.float64))
    v_y, v_x = np.gradient(v.astype(np.float64))
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)




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


FLO_TAG = 202021.25


def read_flo(path: str | Path) -> np.ndarray:
    """A Middlebury ``.flo`` file as ``(H, W, 2)`` float32 (u, v), as IPOL and Sintel write it."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != np.float32(FLO_TAG):
        raise ValueError(f"{path} is not a Middlebury .flo file (its first 4 bytes are not the tag {FLO_TAG})")
    width, height = (int(x) for x in np.frombuffer(data[4:12], "<i4"))
    expected = 12 + width * height * 8
    if width <= 0 or height <= 0 or len(data) != expected:
        raise ValueError(
            f"{path}: header says {width}x{height} (expecting {expected} bytes), the file has {len(data)}"
        )
    return np.frombuffer(data[12:], "<f4").reshape(height, width, 2).copy()


def endpoint_error(flow: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean endpoint error ``|flow - reference|`` in pixels, over ``valid`` pixels if given."""
    if flow.shape != reference.shape:
        raise ValueError(f"flow {flow.shape} and reference {reference.shape} differ in shape")
    epe = np.linalg.norm(flow.astype(np.float64) - reference, axis=-1)
    return float(epe[valid].mean() if valid is not None else epe.mean())
