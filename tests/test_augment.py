"""Mirror augmentation: the mirrored maps are those of the mirrored face, training only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from mefnet.preprocessing.flow import compute_flow, flow_maps, normalize_maps
from mefnet.training.module import MERModule


def _module(hflip):
    return MERModule(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)), nn.CrossEntropyLoss(),
                     torch.optim.SGD, 3, hflip=hflip)


def _maps_of(onset: np.ndarray, apex: np.ndarray, how: str) -> torch.Tensor:
    maps = normalize_maps(flow_maps(compute_flow(onset, apex), 32), how)
    return torch.from_numpy(np.ascontiguousarray(maps))[None].float()


def test_mirrored_maps_match_the_flow_of_the_mirrored_frames():
    how, mode = "none", "negate"
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((96, 96)) * 255).astype(np.uint8), (0, 0), 2)
    # A motion that is not left-right symmetric: the left half moves right by 1 px.
    warp = np.tile(np.arange(96, dtype=np.float32), (96, 1))
    shift = np.where(warp < 48, 1.0, 0.0).astype(np.float32)
    grid_y = np.repeat(np.arange(96, dtype=np.float32)[:, None], 96, axis=1)
    apex = cv2.remap(img, warp - cv2.GaussianBlur(shift, (0, 0), 6), grid_y, cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)
    original = _maps_of(img, apex, how)
    mirrored_frames = _maps_of(img[:, ::-1].copy(), apex[:, ::-1].copy(), how)
    mirrored = _module(mode).mirror(original)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    err = (mirrored - mirrored_frames)[inner].abs().mean()
    scale = (original - mirrored_frames)[inner].abs().mean()
    assert err < 0.25 * scale, (float(err), float(scale))
    assert torch.equal(_module(mode).mirror(mirrored), original)  # mirroring twice is the identity


def test_one_minus_is_the_mirror_of_min_max_scaled_maps():
    raw = torch.randn(2, 3, 16, 16)
    scaled = torch.from_numpy(np.stack([normalize_maps(m.numpy(), "minmax") for m in raw]))
    mirrored_raw = _module("negate").mirror(raw)
    expected = torch.from_numpy(np.stack([normalize_maps(m.numpy(), "minmax") for m in mirrored_raw]))
    assert torch.allclose(_module("one_minus").mirror(scaled), expected, atol=1e-6)


def test_augmentation_changes_training_batches_but_never_prediction():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    plain, flipped = _module(None), _module("one_minus")
    flipped.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.equal(plain.predict_step((x,), 0), flipped.predict_step((x,), 0))
    seen = []
    flipped.backbone.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    flipped.log = lambda *a, **k: None
    flipped.training_step((x, torch.zeros(8, dtype=torch.long)), 0)
    changed = (seen[0] != x).flatten(1).any(dim=1)
    assert 0 < int(changed.sum()) < 8  # some clips mirrored, some not
    with pytest.raises(ValueError, match="hflip"):
        _module("sideways")
