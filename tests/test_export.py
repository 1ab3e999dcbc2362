"""mefnet-export: TorchScript and ONNX files that compute what the PyTorch model computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mefnet.config import compose, instantiate_option
from mefnet.inference.checkpoint import MODEL_FILE, load_model, save_model
from mefnet.inference.export import (
    ExportError,
    export_onnx,
    export_torchscript,
    main,
    read_metadata,
)
from mefnet.models import MODEL_FILE_BACKBONES
from mefnet.preprocessing.features import build_features
from tests.helpers import trained_am3f

MODELS = {cls.model_name: cls for cls in MODEL_FILE_BACKBONES}


@pytest.fixture(scope="module")
def fold_model(tmp_path_factory) -> Path:
    experiment = trained_am3f(tmp_path_factory.getbasetemp() / "am3f-experiment")
    return next(iter(sorted(experiment.glob(f"folds/*/*/{MODEL_FILE}"))))


@pytest.fixture(scope="module")
def real_maps(fold_model) -> torch.Tensor:
    """The experiment's own input maps (what the exported model will be fed)."""
    loaded = load_model(fold_model)
    index = instantiate(loaded.config["dataset"]["index"])
    return build_features(index, loaded.preprocessing(), loaded.config["preprocessing"]["cache_dir"])


def _untrained(name: str, tmp_path: Path) -> Path:
    """A model file of backbone ``name`` with its default config (seeded weights)."""
    cfg = compose([f"backbone={name}"])
    torch.manual_seed(0)
    backbone = instantiate_option(cfg.backbone, num_classes=3)
    # Give batch norm non-trivial statistics, as training would.
    backbone.train()
    with torch.no_grad():
        backbone(torch.rand(16, 3, 28, 28))
    return save_model(tmp_path / f"{name}.pt", backbone, cfg, ["negative", "positive", "surprise"])


def _reference(path: Path, maps: torch.Tensor) -> torch.Tensor:
    loaded = load_model(path)
    with torch.no_grad():
        return loaded.model(maps)


def test_torchscript_of_the_trained_model_matches_pytorch_on_real_inputs(fold_model, real_maps, tmp_path):
    out = tmp_path / "model.torchscript.pt"
    assert export_torchscript(load_model(fold_model), out) < 1e-5
    scripted = torch.jit.load(str(out))
    for batch in (real_maps[:1], real_maps[:17]):
        assert torch.allclose(scripted(batch), _reference(fold_model, batch), atol=1e-5)
    meta = read_metadata(out)
    assert meta["class_names"] == ["negative", "positive", "surprise"]
    assert meta["input"]["shape"] == ["N", 3, 28, 28] and meta["preprocessing"]["normalize"] == "minmax"


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"am3f"}))
def test_torchscript_of_every_backbone_matches_pytorch(name, tmp_path):
    path = _untrained(name, tmp_path)
    diff = export_torchscript(load_model(path), tmp_path / f"{name}.ts")
    assert diff < 1e-5
    maps = torch.rand(5, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(torch.jit.load(str(tmp_path / f"{name}.ts"))(maps), _reference(path, maps), atol=1e-5)


def _onnx_session(path: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture
def onnx_stack():
    for module in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(module, reason=f"{module} not installed: pip install 'mefnet[onnx]'")


@pytest.mark.slow  # about 8 s of CPU: torch.export plus the onnxscript translation
def test_onnx_of_the_trained_model_matches_pytorch_on_real_inputs(onnx_stack, fold_model, real_maps, tmp_path):
    out = tmp_path / "model.onnx"
    assert export_onnx(load_model(fold_model), out) < 1e-4
    session = _onnx_session(out)
    for batch in (real_maps[:1], real_maps[:17]):
        (logits,) = session.run(None, {"maps": batch.numpy()})
        assert torch.allclose(torch.from_numpy(logits), _reference(fold_model, batch), atol=1e-4)
    assert read_metadata(out)["class_names"] == ["negative", "positive", "surprise"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(MODELS) - {"am3f"}))
def test_onnx_of_every_backbone_matches_pytorch(onnx_stack, name, tmp_path):
    path = _untrained(name, tmp_path)
    assert export_onnx(load_model(path), tmp_path / f"{name}.onnx") < 1e-4
    maps = torch.rand(5, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    (logits,) = _onnx_session(tmp_path / f"{name}.onnx").run(None, {"maps": maps.numpy()})
    assert torch.allclose(torch.from_numpy(logits), _reference(path, maps), atol=1e-4)


def test_export_never_overwrites_and_refuses_non_models(fold_model, tmp_path, capsys):
    target = tmp_path / "model.ts"
    target.write_text("keep me")
    assert main([str(fold_model), "--torchscript", str(target)]) == 1
    assert "exists" in capsys.readouterr().err and target.read_text() == "keep me"
    assert main([str(target), "--torchscript", str(tmp_path / "x.ts")]) == 1
    assert f"{target} is not a mefnet model file" in capsys.readouterr().err
    with pytest.raises(ExportError, match="exists"):
        export_torchscript(load_model(fold_model), target)


def test_export_command_writes_and_reports_the_difference(fold_model, tmp_path, capsys):
    out = tmp_path / "m.ts"
    assert main([str(fold_model), "--torchscript", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"TorchScript: {out}" in printed and "max |logit difference| to PyTorch" in printed
    assert json.loads(json.dumps(read_metadata(out)))["backbone"] == "am3f"


def test_onnx_without_its_packages_says_what_to_install(fold_model, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ExportError, match=r"onnxscript not installed; .*pip install 'mefnet\[onnx\]'"):
        export_onnx(load_model(fold_model), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
