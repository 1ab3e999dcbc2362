"""Flow-aware augmentation: an augmented clip holds the maps of the transformed motion
(mirror, shift, zoom, rotation), and prediction never augments."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from mefnet.preprocessing.flow import compute_flow, flow_maps, normalize_maps, optical_strain
from mefnet.training.augment import FlowAugment, mirror_averaged
from mefnet.training.module import MERModule

_SCALE = {"negate": "none", "one_minus": "minmax"}


def _module(mode):
    augment = None if mode is None else FlowAugment(hflip=0.5, scale=_SCALE[mode])
    return MERModule(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)), nn.CrossEntropyLoss(),
                     torch.optim.SGD, 3, augment=augment)


def _mirror(mode, x):
    return FlowAugment(scale=_SCALE[mode]).mirror(x)


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
    mirrored = _mirror(mode, original)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    err = (mirrored - mirrored_frames)[inner].abs().mean()
    scale = (original - mirrored_frames)[inner].abs().mean()
    assert err < 0.25 * scale, (float(err), float(scale))
    assert torch.equal(_mirror(mode, mirrored), original)  # mirroring twice is the identity


def test_one_minus_is_the_mirror_of_min_max_scaled_maps():
    raw = torch.randn(2, 3, 16, 16)
    scaled = torch.from_numpy(np.stack([normalize_maps(m.numpy(), "minmax") for m in raw]))
    mirrored_raw = _mirror("negate", raw)
    expected = torch.from_numpy(np.stack([normalize_maps(m.numpy(), "minmax") for m in mirrored_raw]))
    assert torch.allclose(_mirror("one_minus", scaled), expected, atol=1e-6)


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


N = 64


def _field(transform=None):
    """An asymmetric smooth motion (pixels) sampled at the pixel centres of an N x N face,
    optionally of the face moved by ``transform = (shift, factor, angle)``:
    F'(p) = s R F(T^-1 p) with T p = s R p + shift (centred pixel coordinates, y down)."""
    c = np.arange(N) + 0.5 - N / 2
    x, y = np.meshgrid(c, c)
    if transform is not None:
        (tx, ty), s, a = transform
        px, py = (x - tx) / s, (y - ty) / s
        x, y = np.cos(a) * px + np.sin(a) * py, -np.sin(a) * px + np.cos(a) * py
    bump = np.exp(-((x - 6) ** 2 + (y + 4) ** 2) / 60.0)
    u = 1.5 * bump + 0.02 * y
    v = -0.8 * bump * (x > -2) + 0.01 * x
    if transform is not None:
        (_, s, a) = transform
        u, v = s * (np.cos(a) * u - np.sin(a) * v), s * (np.sin(a) * u + np.cos(a) * v)
    flow = np.stack([u, v], axis=-1).astype(np.float32)
    return torch.from_numpy(flow_maps(flow, N))[None]


@pytest.mark.parametrize("shift, factor, degrees", [
    ((3.0, -2.0), 1.0, 0.0),     # shift: vectors unchanged
    ((0.0, 0.0), 1.1, 0.0),      # zoom: vectors scale with the face
    ((0.0, 0.0), 1.0, 12.0),     # rotation: vectors turn with the face
    ((2.0, 1.0), 0.9, -8.0),     # all at once
])
def test_transformed_maps_are_the_flow_of_the_transformed_motion(shift, factor, degrees):
    angle = np.radians(degrees)
    original, expected = _field(), _field((shift, factor, angle))
    aug = FlowAugment(scale="none")
    got = aug.transform(original, torch.tensor([shift]), torch.tensor([factor]), torch.tensor([angle]).float())
    inner = (slice(None), slice(None), slice(10, -10), slice(10, -10))
    for ch, name in enumerate(("u", "v", "strain")):
        err = (got - expected)[inner][:, ch].abs().mean()
        scale = expected[inner][:, ch].abs().mean()
        moved = (original - expected)[inner][:, ch].abs().mean()
        assert err < 0.05 * scale, (name, float(err), float(scale))
        if degrees or shift != (0.0, 0.0):
            assert err < 0.2 * moved, (name, float(err), float(moved))  # the transform did something


def test_strain_of_the_transformed_flow_is_the_transformed_strain():
    flow = _field()
    strain = optical_strain(flow[0, 0].numpy(), flow[0, 1].numpy())
    assert np.allclose(strain, flow[0, 2].numpy(), atol=1e-6)  # flow_maps at full size keeps strain as is


def test_min_max_maps_shift_and_zoom_but_refuse_rotation():
    aug = FlowAugment(translate=2, zoom=0.1, hflip=0.5, scale="minmax").train()
    torch.manual_seed(0)
    x = torch.rand(16, 3, 28, 28)
    out = aug(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # interpolation stays within 0..1
    assert torch.equal(aug.eval()(x), x)  # never outside training
    with pytest.raises(ValueError, match="normalize=none"):
        FlowAugment(rotate=10, scale="minmax")
    with pytest.raises(ValueError, match="augment.zoom"):
        FlowAugment(zoom=1.5)
    with pytest.raises(ValueError, match="augment.hflip"):
        FlowAugment(hflip=2)
    with pytest.raises(ValueError, match="augment.scale"):
        FlowAugment(scale="sideways")


def test_augment_group_builds_from_config():
    from hydra.utils import instantiate

    from mefnet.config import compose

    for name, active in (("none", False), ("hflip", True), ("flow", True)):
        aug = instantiate(compose([f"augment={name}"]).augment)
        assert isinstance(aug, FlowAugment) and aug.active == active and aug.scale == "minmax"
    aug = instantiate(compose(["augment=flow", "augment.rotate=10", "preprocessing.normalize=none"]).augment)
    assert aug.rotate == 10 and aug.scale == "none"


def test_test_time_mirror_averages_the_clip_and_its_mirror_image():
    torch.manual_seed(0)
    x = torch.rand(5, 3, 32, 32)
    plain = _module(None)
    tta = MERModule(plain.backbone, nn.CrossEntropyLoss(), torch.optim.SGD, 3,
                    test_time_mirror=FlowAugment(scale="minmax"))
    with torch.no_grad():
        p = tta.predict_step((x,), 0)
        mirrored = torch.cat([1 - x.flip(-1)[:, :1], x.flip(-1)[:, 1:]], dim=1)
        expected = (torch.softmax(plain(x), 1) + torch.softmax(plain(mirrored), 1)) / 2
        assert torch.allclose(p, expected, atol=1e-6)
        assert not torch.allclose(p, plain.predict_step((x,), 0), atol=1e-4)
        assert torch.allclose(tta.predict_step((mirrored,), 0), p, atol=1e-6)  # a clip and its mirror agree


def test_model_file_applies_the_test_time_mirror_it_was_trained_with(tmp_path):
    from mefnet.config import compose
    from mefnet.inference.checkpoint import load_model, save_model
    from mefnet.models.ststnet import STSTNet

    torch.manual_seed(0)
    net = STSTNet(num_classes=3).eval()
    x = torch.rand(4, 3, 28, 28)
    for flag in (False, True):
        cfg = compose(["backbone=ststnet", f"test_time_mirror={str(flag).lower()}"])
        save_model(tmp_path / f"m{flag}.pt", net, cfg, ["negative", "positive", "surprise"])
        module = MERModule(net, nn.CrossEntropyLoss(), torch.optim.SGD, 3,
                           test_time_mirror=FlowAugment(scale="minmax") if flag else None).eval()
        with torch.no_grad():
            assert torch.allclose(load_model(tmp_path / f"m{flag}.pt").probabilities(x),
                                  module.predict_step((x,), 0), atol=1e-6)


def test_mirror_averaged_predicts_a_clip_and_its_mirror_image_alike():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    x = torch.randn(4, 3, 8, 8)
    mirror = FlowAugment(scale="none")

    def softmax(maps):
        return torch.softmax(net(maps), dim=1)

    assert torch.equal(mirror_averaged(softmax, x, None), softmax(x))  # no mirror: the plain probabilities
    averaged = mirror_averaged(softmax, x, mirror)
    assert torch.equal(averaged, (softmax(x) + softmax(mirror.mirror(x))) / 2)
    assert not torch.allclose(averaged, softmax(x))
    assert torch.allclose(mirror_averaged(softmax, mirror.mirror(x), mirror), averaged)

