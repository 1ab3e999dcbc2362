"""``mefnet-export``: a trained model as TorchScript or ONNX, checked against PyTorch.

::

    mefnet-export outputs/<experiment>/seed_<seed>/folds/<dataset>/<subject>/model.pt \\
        --torchscript model.torchscript.pt --onnx model.onnx

The exported model maps ``maps`` ``(N, 3, size, size)`` float32 (u, v, optical strain,
made as in training: see ``mefnet-predict``) to ``logits`` ``(N, classes)``; the batch size
is free. The class names, input size and preprocessing travel with the file as JSON
(TorchScript: extra file ``mefnet.json``; ONNX: metadata property ``mefnet``).

Each export is run once more after writing and compared with the PyTorch model on
seeded random inputs at two batch sizes; the largest difference is printed, and an
export that differs by more than ``tolerance`` is removed and reported as an error.
ONNX needs the ``onnx`` extra: ``pip install 'mefnet[onnx]'`` (onnx, onnxruntime,
onnxscript).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import sys
import warnings
from pathlib import Path

import torch

from mefnet.inference.checkpoint import LoadedModel, ModelFileError, ensemble, load_models
from mefnet.utils.files import atomic_path

META_NAME = "mefnet.json"
ONNX_META_KEY = "mefnet"
TOLERANCE = 1e-4
ONNX_INSTALL_HINT = "ONNX export needs the onnx extra: pip install 'mefnet[onnx]' (onnx, onnxruntime, onnxscript)"


class ExportError(RuntimeError):
    """An export could not be written, or does not match the PyTorch model."""


def metadata(loaded: LoadedModel) -> dict:
    """What a user of the exported file needs to feed it and read its output."""
    return {
        "format": "mefnet-export",
        "source": str(loaded.path),
        "backbone": loaded.backbone_name,
        "class_names": loaded.class_names,
        "input": {"name": "maps", "shape": ["N", 3, loaded.input_size, loaded.input_size],
                  "channels": ["u", "v", "strain"]},
        "output": {"name": "logits", "shape": ["N", len(loaded.class_names)]},
        "preprocessing": loaded.config["preprocessing"],
        "fold": loaded.fold,
        "members": loaded.extra.get("members", [str(loaded.path)]),
        "mefnet_version": loaded.mefnet_version,
    }


def example_input(loaded: LoadedModel, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded maps in 0..1, the range of the default (min-max) normalization."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, loaded.input_size, loaded.input_size, generator=g)


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ExportError(f"{path} exists; choose another name or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)


def _reference(loaded: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    loaded.model.eval()
    with torch.no_grad():
        return loaded.model(x)


def _verify(path: Path, run, loaded: LoadedModel, tolerance: float) -> float:
    worst = 0.0
    for batch, seed in ((1, 1), (5, 2)):
        x = example_input(loaded, batch, seed)
        got = torch.as_tensor(run(x))
        if got.shape != (batch, len(loaded.class_names)):
            path.unlink(missing_ok=True)
            raise ExportError(f"{path}: output shape {tuple(got.shape)} for batch {batch}; expected "
                              f"({batch}, {len(loaded.class_names)})")
        diff = float((got - _reference(loaded, x)).abs().max())
        if not math.isfinite(diff):  # max() would skip a NaN: the check must not pass on one
            path.unlink(missing_ok=True)
            raise ExportError(f"{path}: exported or reference logits are not finite for batch {batch}; removed")
        worst = max(worst, diff)
    if worst > tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: exported logits differ from PyTorch by {worst:.3g} (> {tolerance}); removed")
    return worst


def export_torchscript(loaded: LoadedModel, path: str | Path, overwrite: bool = False,
                       tolerance: float = TOLERANCE) -> float:
    """Trace the model to TorchScript at ``path``; returns the largest difference found
    against PyTorch (see the module docstring)."""
    path = Path(path)
    _check_target(path, overwrite)
    loaded.model.eval()
    with warnings.catch_warnings():
        # Shape checks inside the models become constants of the trace: the input size is
        # fixed by the model anyway, and the batch size stays free (checked below).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(loaded.model, example_input(loaded), check_trace=False)
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={META_NAME: json.dumps(metadata(loaded))})
    reloaded = torch.jit.load(str(path))
    with torch.no_grad():
        return _verify(path, lambda x: reloaded(x), loaded, tolerance)


def onnx_available() -> str | None:
    """None when ONNX export can run, else what is missing."""
    import importlib.util

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # a broken or blocked installation
            return True

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if absent(m)]
    return f"{', '.join(missing)} not installed; {ONNX_INSTALL_HINT}" if missing else None


def export_onnx(loaded: LoadedModel, path: str | Path, overwrite: bool = False,
                tolerance: float = TOLERANCE) -> float:
    """Export the model to ONNX at ``path`` (dynamic batch size), checked with onnxruntime;
    returns the largest difference found against PyTorch."""
    problem = onnx_available()
    if problem:
        raise ExportError(problem)
    import onnx
    import onnxruntime

    path = Path(path)
    _check_target(path, overwrite)
    loaded.model.eval()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" ...
    try:
        with atomic_path(path) as tmp:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    loaded.model, (example_input(loaded),), str(tmp),
                    input_names=["maps"], output_names=["logits"],
                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                    dynamo=True, external_data=False,
                )
            proto = onnx.load(str(tmp))
            entry = proto.metadata_props.add()
            entry.key, entry.value = ONNX_META_KEY, json.dumps(metadata(loaded))
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
    except Exception as e:
        if isinstance(e, ExportError):
            raise
        raise ExportError(f"ONNX export of {loaded.path} failed: {type(e).__name__}: {str(e)[:500]}") from e
    finally:
        quiet.setLevel(level)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _verify(path, lambda x: session.run(None, {"maps": x.numpy()})[0], loaded, tolerance)


def read_metadata(path: str | Path) -> dict:
    """The ``mefnet`` metadata of an exported file (TorchScript or ONNX)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if ONNX_META_KEY not in props:
            raise ExportError(f"{path} has no '{ONNX_META_KEY}' metadata; not exported by mefnet-export")
        return json.loads(props[ONNX_META_KEY])
    files = {META_NAME: ""}
    torch.jit.load(str(path), _extra_files=files)
    if not files[META_NAME]:
        raise ExportError(f"{path} has no {META_NAME}; not exported by mefnet-export")
    return json.loads(files[META_NAME])


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``mefnet-export``)."""
    ap = argparse.ArgumentParser(prog="mefnet-export", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  mefnet-export outputs/megc2019-am3f --seed 1 --torchscript model.pt --onnx model.onnx",
                                 description="Export a trained mefnet model to TorchScript and/or ONNX.")
    ap.add_argument("model", help="a model.pt, or a seed or experiment folder: its models exported as one "
                                  "ensemble whose logits are log(mean probability)")
    ap.add_argument("--seed", type=int, help="with an experiment folder: only this seed's models")
    ap.add_argument("--folds", action="store_true",
                    help="with a folder: export the LOSO fold models even when a final model (fold=none) exists")
    ap.add_argument("--torchscript", help="write a TorchScript file here (e.g. model.torchscript.pt)")
    ap.add_argument("--onnx", help="write an ONNX file here (e.g. model.onnx); needs mefnet[onnx]")
    ap.add_argument("--overwrite", action="store_true", help="replace existing output files")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE,
                    help=f"largest allowed |logit difference| to PyTorch (default {TOLERANCE})")
    a = ap.parse_args(argv)
    if not a.torchscript and not a.onnx:
        ap.error("give --torchscript PATH and/or --onnx PATH")
    try:
        loaded = ensemble(load_models(a.model, a.seed, final=not a.folds,
                                      say=lambda line: print(f"mefnet-export: {line}", file=sys.stderr)), a.model)
        if len(loaded.extra.get("members", [])) > 1:
            print(f"exporting an ensemble of {len(loaded.extra['members'])} models from {a.model}")
        if a.onnx and onnx_available():
            raise ExportError(onnx_available())
        if a.torchscript:
            diff = export_torchscript(loaded, a.torchscript, a.overwrite, a.tolerance)
            print(f"TorchScript: {a.torchscript} (max |logit difference| to PyTorch {diff:.2g})")
        if a.onnx:
            diff = export_onnx(loaded, a.onnx, a.overwrite, a.tolerance)
            print(f"ONNX: {a.onnx} (max |logit difference| to PyTorch {diff:.2g})")
    except (ModelFileError, ExportError) as e:
        print(f"mefnet-export: {e}", file=sys.stderr)
        return 1  # refused input: one line, exit status 1, as every mefnet command (argparse's usage errors: 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
