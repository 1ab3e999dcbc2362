"""Backbones: shapes at every input size, AM3F-FlowNet's ablation switches, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mefnet.config import instantiate_option
from mefnet.models import MODEL_FILE_BACKBONES, AM3FFlowNet, model_file_backbone

# Every backbone mefnet ships, by the name its config file has.
MODELS = {cls.model_name: cls for cls in MODEL_FILE_BACKBONES}

BACKBONE_CONFIGS = Path(__file__).resolve().parents[1] / "conf" / "backbone"
NUM_CLASSES = 3


def _input(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator)


def _seeded(cls: type[nn.Module], **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return cls(num_classes=NUM_CLASSES, **kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [28, 64, 128])
def test_every_backbone_gives_one_logit_per_class_at_any_size_and_batch(name: str, size: int):
    model = MODELS[name](num_classes=NUM_CLASSES, in_channels=3, input_size=size)
    for train in (True, False):
        model.train(train)
        for batch in (1, 4):
            logits = model(_input(batch, size))
            assert logits.shape == (batch, NUM_CLASSES)
            assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_gives_identical_outputs(name: str):
    x = _input(4, 28)
    first = _seeded(MODELS[name], input_size=28).eval()(x)
    second = _seeded(MODELS[name], input_size=28).eval()(x)
    assert torch.equal(first, second)


def test_every_backbone_config_builds_and_its_model_files_are_loadable():
    """Each conf/backbone/*.yaml builds its model, and its class is on the allow-list of
    what a model.pt may rebuild (so the runs it trains leave loadable model files); every
    allowed class has a config whose file name is its model_name."""
    targets = {}
    for path in sorted(BACKBONE_CONFIGS.glob("*.yaml")):
        cfg = OmegaConf.create({"preprocessing": {"size": 28}, "backbone": OmegaConf.load(path)})
        model = instantiate_option(cfg.backbone, num_classes=NUM_CLASSES)
        assert model(_input(2, 28)).shape == (2, NUM_CLASSES)
        assert model.input_size == 28
        targets[path.stem] = type(model)
    assert targets == MODELS
    for cls in targets.values():
        assert model_file_backbone(f"{cls.__module__}.{cls.__name__}") is cls


def test_backbone_config_follows_preprocessing_size():
    cfg = OmegaConf.create(
        {
            "preprocessing": {"size": 64},
            "backbone": OmegaConf.load(BACKBONE_CONFIGS / "ststnet.yaml"),
        }
    )
    model = instantiate_option(cfg.backbone, num_classes=NUM_CLASSES).eval()
    assert model(_input(2, 64)).shape == (2, NUM_CLASSES)


# --- AM3F-FlowNet ablations -------------------------------------------------------------

ABLATIONS = [
    ("branches", ["u"]),
    ("branches", ["v"]),
    ("branches", ["strain"]),
    ("branches", ["u", "v"]),
    ("branches", ["v", "strain"]),
    ("msff", "single"),
    ("msff", "off"),
    ("spatial_attention", False),
    ("mofrw", "stream"),
    ("mofrw", "channel"),
    ("mofrw", "off"),
]


def _copy_shared_weights(source: nn.Module, target: nn.Module) -> list[str]:
    """Copy every tensor ``target`` shares (name and shape) with ``source``; return the rest."""
    source_state = source.state_dict()
    target_state = target.state_dict()
    not_copied = []
    for key, value in target_state.items():
        if key in source_state and source_state[key].shape == value.shape:
            target_state[key] = source_state[key].clone()
        else:
            not_copied.append(key)
    target.load_state_dict(target_state)
    return not_copied


@pytest.mark.parametrize(("key", "value"), ABLATIONS, ids=[f"{k}={v}" for k, v in ABLATIONS])
def test_each_am3f_ablation_switch_changes_the_output(key: str, value: object):
    default = _seeded(AM3FFlowNet).eval()
    ablated = _seeded(AM3FFlowNet, **{key: value}).eval()
    not_copied = _copy_shared_weights(default, ablated)
    if key != "branches":
        # The ablated network is the default one with a part removed: every weight it
        # has is the default's, so the output difference comes from the switch alone.
        assert not_copied == []
        assert sum(p.numel() for p in ablated.parameters()) < sum(
            p.numel() for p in default.parameters()
        )
    x = _input(4, 28)
    with torch.no_grad():
        assert not torch.allclose(default(x), ablated(x), atol=1e-4)


def test_the_spatial_head_keeps_a_grid_per_stream_and_gap_pools_it_away():
    spatial = _seeded(AM3FFlowNet).eval()
    gap = _seeded(AM3FFlowNet, head="gap").eval()
    not_copied = _copy_shared_weights(spatial, gap)
    assert not_copied == ["classifier.weight"]  # only the classifier's input size differs
    x = _input(4, 28)
    with torch.no_grad():
        assert spatial.forward_features(x).shape == (4, 3 * 32 * 16)
        assert gap.forward_features(x).shape == (4, 3 * 32)
        # Same weights below the head: the gap features are the grid features averaged.
        grid = spatial.forward_features(x).view(4, 3, 32, 16)
        assert torch.allclose(grid.mean(dim=3).view(4, -1), gap.forward_features(x), atol=1e-5)
        assert spatial.forward_features(_input(2, 128)).shape == (2, 3 * 32 * 16)


def test_msff_single_and_off_differ_from_each_other():
    single = _seeded(AM3FFlowNet, msff="single").eval()
    off = _seeded(AM3FFlowNet, msff="off").eval()
    assert _copy_shared_weights(single, off) == []
    with torch.no_grad():
        assert not torch.allclose(single(_input(4, 28)), off(_input(4, 28)), atol=1e-4)


@pytest.mark.parametrize("msff", ["multi", "single"])
def test_residual_msff_starts_as_the_identity_on_the_last_stage(msff: str):
    """``msff_residual``: the fused term is added to the trunk's last stage with a
    zero-initialised scale, so an untrained branch outputs that stage unchanged."""
    model = _seeded(AM3FFlowNet, msff=msff, msff_residual=True)
    x = _input(4, 28)[:, :1]
    for train in (True, False):
        model.train(train)
        for branch in model.branches.values():
            with torch.no_grad():
                assert torch.equal(branch(x), branch.trunk(x)[-1])


def test_residual_msff_has_the_same_weights_and_changes_the_output_once_trained():
    plain = _seeded(AM3FFlowNet).eval()
    residual = _seeded(AM3FFlowNet, msff_residual=True).eval()
    assert _copy_shared_weights(plain, residual) == []  # same names and shapes
    x = _input(4, 28)
    with torch.no_grad():
        # Same weights (the copied scale is no longer zero): only the skip differs.
        assert not torch.allclose(plain(x), residual(x), atol=1e-4)


@pytest.mark.parametrize(
    ("options", "steps"),
    [({"msff_residual": True}, 2), ({"msff_residual": True, "attention_init": "identity"}, 3)],
)
def test_zero_initialised_parts_train_every_parameter_after_the_first_steps(options: dict, steps: int):
    """Residual MSFF: at initialisation only the zero scale gets a gradient (the fused
    term is multiplied by it); after one step every parameter of the module does. The
    same holds with the identity-initialised attention gates (zero last layers)."""
    torch.manual_seed(0)
    model = AM3FFlowNet(num_classes=NUM_CLASSES, **options).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    target = torch.tensor([0, 1, 2, 0])
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(_input(4, 28)), target).backward()
        optimizer.step()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_identity_initialised_attention_passes_its_input_through_until_trained():
    """``attention_init: identity``: every spatial-attention and squeeze-and-excitation
    gate is ``2 * sigmoid`` of a zero-initialised last layer, so before training it
    multiplies by exactly 1; the default gates (``sigmoid``) do not."""
    from mefnet.models.blocks import SpatialAttention, SqueezeExcitation

    x = _input(4, 28)
    for block in (SpatialAttention(3, identity_init=True), SqueezeExcitation(3, identity_init=True)):
        assert torch.equal(block(x), x)
    assert torch.equal(SqueezeExcitation(3, identity_init=True)(x[:, :, 0, 0]), x[:, :, 0, 0])
    torch.manual_seed(0)
    assert not torch.allclose(SpatialAttention(3)(x), x)
    identity = _seeded(AM3FFlowNet, attention_init="identity", msff_residual=True)
    plain = _seeded(AM3FFlowNet, msff_residual=True)
    assert _copy_shared_weights(plain, identity) == []  # same names and shapes
    gates = [m for m in identity.modules() if isinstance(m, (SpatialAttention, SqueezeExcitation))]
    assert len(gates) == 3 * 3 + 3  # one attention per scale and branch, one SE per stream
    # once the last layers are no longer zero, the identity gate moves either way (up to 2)
    torch.manual_seed(1)
    trained = SpatialAttention(3, identity_init=True)
    nn.init.normal_(trained.conv.weight, std=0.5)
    weights = trained.attention_map(x)
    assert bool((weights > 1).any()) and bool((weights < 1).any()) and bool((weights < 2).all())


@pytest.mark.parametrize("branch", ["u", "v", "strain"])
def test_a_single_branch_model_reads_only_its_own_flow_map(branch: str):
    model = _seeded(AM3FFlowNet, branches=[branch]).eval()
    x = _input(2, 28)
    changed = x.clone()
    own = ["u", "v", "strain"].index(branch)
    for channel in range(3):
        if channel != own:
            changed[:, channel] = torch.randn_like(changed[:, channel])
    with torch.no_grad():
        assert torch.equal(model(x), model(changed))
        changed[:, own] += 1.0
        assert not torch.equal(model(x), model(changed))


def test_branch_order_does_not_matter():
    a = _seeded(AM3FFlowNet, branches=["v", "u"]).eval()
    b = _seeded(AM3FFlowNet, branches=["u", "v"]).eval()
    with torch.no_grad():
        assert torch.equal(a(_input(2, 28)), b(_input(2, 28)))


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("msff", "triple", "multi, single, off"),
        ("mofrw", "both_levels", "both, stream, channel, off"),
        ("spatial_attention", "yes", "true or false"),
        ("msff_residual", "yes", "true or false"),
        ("attention_init", "zero", "sigmoid, identity"),
        ("branches", [], "u, v, strain"),
        ("branches", ["u", "w"], "u, v, strain"),
        ("branches", ["u", "u"], "u, v, strain"),
    ],
)
def test_invalid_am3f_switch_names_the_key_and_allowed_values(key, value, allowed):
    with pytest.raises(ValueError, match=rf"am3f: {key}=.*{allowed}"):
        AM3FFlowNet(**{key: value})


def test_am3f_rejects_inputs_that_are_not_u_v_strain():
    with pytest.raises(ValueError, match="in_channels=2"):
        AM3FFlowNet(in_channels=2)


def test_am3f_stays_small():
    params = sum(p.numel() for p in AM3FFlowNet(num_classes=3).parameters())
    assert 10_000 < params < 100_000


# --- every parameter learns ----------------------------------------------------------------

BACKWARD_CASES = [(name, {}) for name in sorted(MODELS)] + [("am3f", {k: v}) for k, v in ABLATIONS] + [
    ("am3f", {"head": "gap"}),
]


@pytest.mark.parametrize(("name", "kwargs"), BACKWARD_CASES,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}"
                              for n, kw in BACKWARD_CASES])
def test_every_parameter_gets_a_gradient(name: str, kwargs: dict):
    """A parameter without a gradient never trains: a wiring mistake (a branch left out of
    the graph, a module built but not called) that the output shape cannot show."""
    torch.manual_seed(0)
    model = MODELS[name](num_classes=NUM_CLASSES, in_channels=3, input_size=28, **kwargs).train()
    logits = model(_input(4, 28))
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not bool(
        torch.isfinite(p.grad).all()) or not bool(p.grad.abs().sum() > 0))]
    assert missing == [], f"{name} {kwargs}: no (finite, non-zero) gradient for {missing}"
