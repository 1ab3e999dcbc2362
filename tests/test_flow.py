"""Optical strain, TV-L1 and the flow cache."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mefnet.preprocessing.cache import FlowCache, cache_key
from mefnet.preprocessing.flow import (
    FlowParams,
    TVL1Params,
    compute_flow,
    flow_maps,
    normalize_maps,
    optical_strain,
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
