"""Optical strain, TV-L1 and the flow cache."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mefnet.preprocessing.cache import FlowCache, cache_key
from mefnet.preprocessing.flow import (
    FLOW_METHODS,
    FlowParams,
    TVL1Params,
    compute_flow,
    endpoint_error,
    flow_maps,
    normalize_maps,
    optical_strain,
    read_flo,
)


def test_optical_strain_matches_an_analytic_affine_field():
    # u = a x + b y, v = c x + d y  =>  strain = sqrt(a^2 + d^2 + 0.5 (b + c)^2) everywhere.
    a, b, c, d = 0.1, 0.0, 0.0, 0.3
    yy, xx = np.mgrid[0:40, 0:50].astype(np.float64)
    u, v = a * xx + b * yy, c * xx + d * yy
    strain = optical_strain(u, v)
    expected = np.sqrt(a**2 + d**2 + 0.5 * (b + c) ** 2)
    np.testing.assert_allclose(strain, expected, rtol=1e-6)
    # The swapped derivative order (d/dx taken as d/dy) would give a different value.
    assert not np.isclose(expected, np.sqrt(b**2 + c**2 + 0.5 * (a + d) ** 2))


def test_optical_strain_matches_a_nonlinear_field_in_the_interior():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    u = np.sin(xx / 9.0) + 0.5 * np.cos(yy / 7.0)
    v = 0.3 * np.sin(yy / 5.0) * np.cos(xx / 11.0)
    u_x, u_y = np.cos(xx / 9.0) / 9.0, -0.5 * np.sin(yy / 7.0) / 7.0
    v_x = -0.3 * np.sin(yy / 5.0) * np.sin(xx / 11.0) / 11.0
    v_y = 0.3 * np.cos(yy / 5.0) * np.cos(xx / 11.0) / 5.0
    expected = np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2)
    np.testing.assert_allclose(optical_strain(u, v)[2:-2, 2:-2], expected[2:-2, 2:-2], atol=2e-3)


def _texture(size: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = sum(cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), s) * w
              for s, w in ((1.5, 30.0), (4.0, 60.0), (10.0, 90.0)))
    return np.clip(128 + img, 0, 255).astype(np.uint8)


def test_tvl1_recovers_a_known_subpixel_shift_of_a_textured_image():
    img = _texture()
    dx, dy = 0.6, -0.35
    shifted = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), img.shape[::-1],
                             flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    flow = compute_flow(img, shifted)
    inner = flow[16:-16, 16:-16]
    epe = np.linalg.norm(inner - np.array([dx, dy], np.float32), axis=-1).mean()
    assert epe < 0.1, f"mean endpoint error {epe:.3f} px"


@pytest.mark.parametrize("method,bound", [("tvl1", 0.05), ("dis", 0.15), ("farneback", 0.15)])
@pytest.mark.parametrize("dx,dy", [(0.6, -0.35), (2.5, 1.5)])
def test_every_method_recovers_a_known_shift(method, bound, dx, dy):
    # Measured: tvl1 0.01-0.02, dis 0.06-0.07, farneback 0.04-0.05 px.
    img = _texture()
    shifted = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), img.shape[::-1],
                             flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    flow = compute_flow(img, shifted, FlowParams(method=method))
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16]
    assert endpoint_error(inner, np.broadcast_to(np.float32([dx, dy]), inner.shape)) < bound


def test_flow_settings_are_a_config_group_and_the_keys_still_work():
    from mefnet.config import compose

    default = compose().preprocessing.flow
    assert default.method == "tvl1" and FlowParams.from_config(default) == FlowParams()
    assert compose(["flow=tvl1"]).preprocessing.flow.tvl1.warps == 5  # OpenCV's defaults
    assert compose(["preprocessing.flow.tvl1.warps=3"]).preprocessing.flow.tvl1.warps == 3
    for method in FLOW_METHODS:
        assert FlowParams.from_config(compose([f"flow={method if method != 'tvl1' else 'tvl1_fast'}"])
                                      .preprocessing.flow).method == method
    dis = FlowParams.from_config(compose(["flow=dis", "preprocessing.flow.dis.patch_size=12"]).preprocessing.flow)
    assert dis.dis.patch_size == 12
    switched = FlowParams.from_config(compose(["preprocessing.flow.method=farneback"]).preprocessing.flow)
    assert switched.method == "farneback" and switched.farneback.winsize == 15


def test_only_the_chosen_methods_parameters_key_the_cache():
    a = FlowParams(method="dis")
    b = FlowParams(method="dis", tvl1=TVL1Params(warps=9))
    assert a.describe() == b.describe() and set(a.describe()) == {"method", "dis"}
    assert FlowParams(method="tvl1").describe() != FlowParams(method="dis").describe()


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"method": "lk"}, r"preprocessing.flow.method: 'lk' is not one of tvl1, dis, farneback"),
        ({"tvl1": {"scale_step": 1.2}}, r"preprocessing.flow.tvl1: scale_step must be between 0 and 1"),
        ({"tvl1": {"median_filtering": 4}}, r"median_filtering must be an odd number"),
        ({"tvl1": {"warps": 0}}, r"warps must be a whole number >= 1, got 0"),
        ({"tvl1": {"lambda": "high"}}, r"preprocessing.flow.tvl1.lambda: expected a number, got 'high'"),
        ({"dis": {"patch_stride": 9}}, r"patch_stride must be <= patch_size \(8\)"),
        ({"dis": {"use_spatial_propagation": "yes"}}, r"dis.use_spatial_propagation: expected true or false"),
        ({"farneback": {"poly_n": 6}}, r"preprocessing.flow.farneback: poly_n must be 5 or 7, got 6"),
        ({"farneback": {"window": 9}}, r"farneback: unknown key\(s\) \['window'\]"),
        ({"speed": 1}, r"preprocessing.flow: unknown key\(s\) \['speed'\]"),
    ],
)
def test_bad_flow_settings_name_the_key_and_what_was_expected(cfg, message):
    with pytest.raises(ValueError, match=message):
        FlowParams.from_config(cfg)


def test_flo_files_round_trip_and_bad_ones_are_named(tmp_path):
    flow = np.random.default_rng(0).standard_normal((5, 7, 2)).astype(np.float32)
    path = tmp_path / "a.flo"
    path.write_bytes(np.float32(202021.25).tobytes() + np.int32([7, 5]).tobytes() + flow.tobytes())
    np.testing.assert_array_equal(read_flo(path), flow)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"a.flo: header says 7x5"):
        read_flo(path)
    path.write_bytes(b"GIF89a" + b"\0" * 8)
    with pytest.raises(ValueError, match="not a Middlebury .flo file"):
        read_flo(path)


def test_flow_maps_are_u_v_strain_resized_with_pixel_units_kept():
    flow = np.zeros((128, 128, 2), np.float32)
    flow[..., 0] = 2.0  # 2 px to the right at 128 px ...
    maps = flow_maps(flow, 32)
    assert maps.shape == (3, 32, 32)
    np.testing.assert_allclose(maps[0], 0.5, atol=1e-6)  # ... is 0.5 px at 32 px
    np.testing.assert_allclose(maps[1:], 0.0, atol=1e-6)


def test_minmax_normalization_scales_each_map_to_unit_range():
    maps = np.stack([np.linspace(-3, 5, 16).reshape(4, 4), np.full((4, 4), 2.0), np.arange(16.0).reshape(4, 4)])
    out = normalize_maps(maps, "minmax")
    assert out[0].min() == 0 and out[0].max() == 1 and out[2].max() == 1
    assert np.all(out[1] == 0)  # a constant map has no range
    with pytest.raises(ValueError, match="unknown normalization 'zscore'"):
        normalize_maps(maps, "zscore")


def test_unknown_flow_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['warp'\]"):
        FlowParams.from_config({"method": "tvl1", "tvl1": {"warp": 3}})


def test_cache_key_changes_with_every_parameter(tmp_path):
    f = tmp_path / "img1.png"
    cv2.imwrite(str(f), _texture(16))
    ident = {"clip": "synthetic/sub01/clip001", "onset": 1, "apex": 3}
    base = cache_key(ident, [f], FlowParams().describe())
    assert base == cache_key(ident, [f], FlowParams().describe())
    assert base != cache_key(ident, [f], FlowParams(tvl1=TVL1Params(warps=3)).describe())
    assert base != cache_key({**ident, "apex": 4}, [f], FlowParams().describe())
    cv2.imwrite(str(f), _texture(16, seed=1))  # the frame changed on disk
    assert base != cache_key(ident, [f], FlowParams().describe())


def test_cache_writes_atomically_and_drops_damaged_entries(tmp_path):
    cache = FlowCache(tmp_path)
    arr = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    p = cache.save("ab" * 32, arr)
    assert not list(p.parent.glob("*.tmp"))
    np.testing.assert_array_equal(cache.load("ab" * 32, (3, 2, 2)), arr)
    p.write_bytes(p.read_bytes()[:20])  # a torn file
    assert cache.load("ab" * 32, (3, 2, 2)) is None
    assert not p.exists()
    cache.save("cd" * 32, arr)
    assert cache.load("cd" * 32, (3, 4, 4)) is None  # wrong shape counts as damaged


def test_face_settings_are_part_of_the_preprocessing_key():
    from mefnet.preprocessing.features import Preprocessing

    none = Preprocessing.from_config({"face": "none"}).describe()
    haar = Preprocessing.from_config({"face": "haar"}).describe()
    wider = Preprocessing.from_config({"face": "haar", "face_options": {"margin": 0.3}}).describe()
    assert none != haar != wider
    assert haar["face"]["version"] >= 1
    with pytest.raises(ValueError, match="preprocessing.face: 'dlib' is not one of"):
        Preprocessing.from_config({"face": "dlib"})
    with pytest.raises(ValueError, match="margin must be >= 0"):  # bad options fail up front
        Preprocessing.from_config({"face": "haar", "face_options": {"margin": -1}})
    with pytest.raises(ValueError, match="preprocessing.normalize: 'zscore' is not one of"):
        Preprocessing.from_config({"normalize": "zscore"})
