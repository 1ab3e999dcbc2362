"""Where a trained network looks: spatial attention, stream weights and Grad-CAM.

:func:`explain` runs a backbone once on a batch of input maps and records, with forward
hooks (the model's own forward and outputs are untouched):

- **spatial attention** (AM3F-FlowNet): the CBAM weights in (0, 1) that each branch's
  MSFF applies at every scale, ``attention[branch][scale]`` of shape ``(N, h, w)``;
- **stream weights** (AM3F-FlowNet's MOFRW, stream level): ``(N, streams)``, averaging 1
  over the streams;
- **Grad-CAM** (Selvaraju et al., ICCV 2017), for every backbone: at each CAM layer, the
  feature maps weighted by the spatially averaged gradient of the target class's logit,
  summed over channels and rectified; the layers' maps (one per branch or stream) are
  upsampled to the input size, summed, and scaled to 0..1 per clip. The CAM layers are
  each branch's MSFF output (AM3F-FlowNet), each stream's last spatial layer (STSTNet,
  OFF-ApexNet) or the residual stages (ResNet).

:func:`class_summary` averages these per class over a set of clips (per-class mean
attention and CAM, mean stream weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mefnet.models.blocks import SpatialAttention

_NOT_SPATIAL = (nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Linear)


def _last_spatial(seq: nn.Sequential) -> nn.Module:
    for child in reversed(list(seq.children())):
        if not isinstance(child, _NOT_SPATIAL):
            return child
    return seq


def cam_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose feature maps Grad-CAM weighs (see the module docstring)."""
    branches = getattr(model, "branches", None)
    if isinstance(branches, nn.ModuleDict):  # AM3F-FlowNet
        return [b.msff if b.msff is not None else b.trunk.stages[-1] for b in branches.values()]
    streams = getattr(model, "streams", None)
    if isinstance(streams, (nn.ModuleList, nn.ModuleDict)):  # STSTNet, OFF-ApexNet
        items = streams.values() if isinstance(streams, nn.ModuleDict) else streams
        return [_last_spatial(s) if isinstance(s, nn.Sequential) else s for s in items]
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.Module):  # SmallResNet
        return [stages]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution for Grad-CAM")
    return [convs[-1]]


def attention_modules(model: nn.Module) -> dict[str, dict[str, SpatialAttention]]:
    """AM3F-FlowNet's spatial attention modules, ``{branch: {scale: module}}`` (empty for
    other backbones, or with ``spatial_attention=false`` / ``msff=off``)."""
    out: dict[str, dict[str, SpatialAttention]] = {}
    branches = getattr(model, "branches", None)
    if not isinstance(branches, nn.ModuleDict):
        return out
    for name, branch in branches.items():
        msff = getattr(branch, "msff", None)
        if msff is None:
            continue
        found = {s: m for s, m in msff.attention.items() if isinstance(m, SpatialAttention)}
        if found:
            out[name] = found
    return out


@dataclass
class Explanation:
    """What :func:`explain` found for a batch of N clips."""

    logits: torch.Tensor
    """``(N, classes)``."""
    probabilities: torch.Tensor
    """``(N, classes)`` softmax of the logits."""
    target: torch.Tensor
    """``(N,)`` the class each CAM explains."""
    cam: torch.Tensor
    """``(N, H, W)`` Grad-CAM at the input size, 0..1 per clip (all 0 where nothing supports the class)."""
    attention: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """``{branch: {scale: (N, h, w)}}`` spatial attention in (0, 1), at each scale's own size."""
    stream_names: list[str] = field(default_factory=list)
    stream_weights: torch.Tensor | None = None
    """``(N, streams)`` MOFRW stream weights (mean 1 over streams), or None."""

    def attention_maps(self, size: int | None = None) -> dict[str, torch.Tensor]:
        """Per branch, the mean over scales of the attention upsampled to ``size`` (default:
        the input size): ``{branch: (N, size, size)}``."""
        size = size or self.cam.shape[-1]
        out = {}
        for branch, scales in self.attention.items():
            ups = [F.interpolate(a[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
                   for a in scales.values()]
            out[branch] = torch.stack(ups).mean(dim=0)
        return out


def explain(model: nn.Module, maps: torch.Tensor, target: torch.Tensor | int | None = None) -> Explanation:
    """Run ``model`` (in eval mode) on ``(N, 3, H, W)`` maps and record attention, stream
    weights and the Grad-CAM of ``target`` (default: the predicted class)."""
    model.eval()
    maps = maps.detach().float()
    spatial: dict[str, dict[str, torch.Tensor]] = {}
    recorded: dict[str, object] = {}
    activations: list[torch.Tensor] = []
    handles = []
    for branch, scales in attention_modules(model).items():
        for scale, module in scales.items():
            def keep_attention(m, args, out, branch=branch, scale=scale):
                spatial.setdefault(branch, {})[scale] = m.attention_map(args[0]).detach()[:, 0]

            handles.append(module.register_forward_hook(keep_attention))
    reweighting = getattr(model, "reweighting", None)
    if reweighting is not None and hasattr(reweighting, "weights"):
        def keep_weights(m, args, out):
            w = m.weights(args[0])
            recorded["stream_weights"] = None if w is None else w.detach()
            recorded["stream_names"] = list(m.streams)

        handles.append(reweighting.register_forward_hook(keep_weights))
    for layer in cam_layers(model):
        handles.append(layer.register_forward_hook(lambda m, args, out: activations.append(out)))
    try:
        with torch.enable_grad():
            logits = model(maps)
            if target is None:
                chosen = logits.argmax(dim=1)
            elif isinstance(target, int):
                chosen = torch.full((len(maps),), target, dtype=torch.long)
            else:
                chosen = torch.as_tensor(target, dtype=torch.long)
            score = logits.gather(1, chosen[:, None]).sum()
            grads = torch.autograd.grad(score, activations)
    finally:
        for h in handles:
            h.remove()
    size = maps.shape[-2:]
    cam = torch.zeros(len(maps), *size)
    for act, grad in zip(activations, grads, strict=True):
        weights = grad.mean(dim=(2, 3), keepdim=True)
        layer_cam = F.relu((weights * act).sum(dim=1, keepdim=True)).detach()
        cam += F.interpolate(layer_cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    cam = torch.where(peak > 1e-12, cam / peak, torch.zeros_like(cam)).clamp(0, 1)
    logits = logits.detach()
    return Explanation(
        logits=logits,
        probabilities=torch.softmax(logits, dim=1),
        target=chosen.detach(),
        cam=cam,
        attention=spatial,
        stream_names=list(recorded.get("stream_names", [])),
        stream_weights=recorded.get("stream_weights"),
    )


@dataclass
class ClassSummary:
    """Per-class means over a set of clips, grouped by their true class."""

    class_names: list[str]
    counts: list[int]
    attention: dict[str, np.ndarray]
    """``{branch: (classes, H, W)}`` mean spatial attention (averaged over scales); NaN for
    a class without clips."""
    cam: np.ndarray
    """``(classes, H, W)`` mean Grad-CAM of the true class."""
    stream_names: list[str] = field(default_factory=list)
    stream_weights: np.ndarray | None = None
    """``(classes, streams)`` mean MOFRW stream weights, or None."""
    stream_weights_std: np.ndarray | None = None
    face: np.ndarray | None = None
    """Optional grey ``(H, W)`` uint8 face drawn under the maps (the mean cropped apex)."""

    def to_dict(self) -> dict:
        """Plain numbers for a JSON record (maps are summarized, not listed)."""
        out: dict = {"class_names": self.class_names, "counts": self.counts}
        if self.stream_weights is not None:
            out["stream_names"] = self.stream_names
            out["stream_weights"] = {
                c: dict(zip(self.stream_names, [round(float(x), 4) for x in row], strict=True))
                for c, row in zip(self.class_names, self.stream_weights, strict=True)
            }
        out["attention_between_class_spread"] = {
            b: round(float(between_class_spread(a)), 6) for b, a in self.attention.items()
        }
        return out


def between_class_spread(per_class: np.ndarray) -> float:
    """Mean absolute difference between the class-mean maps of every pair of classes."""
    rows = [r for r in per_class if np.isfinite(r).all()]
    diffs = [np.abs(a - b).mean() for i, a in enumerate(rows) for b in rows[i + 1:]]
    return float(np.mean(diffs)) if diffs else 0.0


class ClassAccumulator:
    """Adds up explanations of batches (possibly from several fold models) per true class."""

    def __init__(self, class_names: list[str]) -> None:
        self.class_names = list(class_names)
        k = len(class_names)
        self.counts = np.zeros(k, dtype=np.int64)
        self.attention: dict[str, np.ndarray] = {}
        self.cam: np.ndarray | None = None
        self.stream_names: list[str] = []
        self.weights: list[list[np.ndarray]] = [[] for _ in range(k)]

    def add(self, model: nn.Module, maps: torch.Tensor, labels: torch.Tensor | list[int],
            batch_size: int = 256) -> None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        k = len(self.class_names)
        for start in range(0, len(maps), batch_size):
            x, y = maps[start:start + batch_size], labels[start:start + batch_size]
            e = explain(model, x, target=y)
            onehot = F.one_hot(y, k).double().numpy()  # (n, k)
            self.counts += onehot.sum(axis=0).astype(np.int64)
            cam = np.einsum("nk,nhw->khw", onehot, e.cam.double().numpy())
            self.cam = cam if self.cam is None else self.cam + cam
            for branch, a in e.attention_maps().items():
                summed = np.einsum("nk,nhw->khw", onehot, a.double().numpy())
                self.attention[branch] = self.attention.get(branch, 0) + summed
            if e.stream_weights is not None:
                self.stream_names = e.stream_names
                for w, c in zip(e.stream_weights.numpy(), y.tolist(), strict=True):
                    self.weights[c].append(w)

    def summary(self) -> ClassSummary:
        if self.cam is None:
            raise ValueError("no clips were added")
        with np.errstate(invalid="ignore", divide="ignore"):
            n = self.counts[:, None, None].astype(np.float64)
            attention = {b: (a / n).astype(np.float32) for b, a in self.attention.items()}
            cam = (self.cam / n).astype(np.float32)
        mean = std = None
        if self.stream_names:
            width = len(self.stream_names)
            mean = np.array([np.mean(w, axis=0) if w else np.full(width, np.nan) for w in self.weights])
            std = np.array([np.std(w, axis=0) if w else np.full(width, np.nan) for w in self.weights])
        return ClassSummary(self.class_names, self.counts.tolist(), attention, cam,
                            list(self.stream_names), mean, std)


def class_summary(model: nn.Module, maps: torch.Tensor, labels, class_names: list[str]) -> ClassSummary:
    """Per-class mean attention, Grad-CAM (of the true class) and stream weights of one model."""
    acc = ClassAccumulator(class_names)
    acc.add(model, maps, labels)
    return acc.summary()


def explain_ensemble(models: list[nn.Module], maps: torch.Tensor,
                     target: torch.Tensor | int | None = None) -> Explanation:
    """:func:`explain` for models averaged in probability (the fold models of an experiment).

    The class explained is the ensemble's prediction (the argmax of the mean probability)
    unless ``target`` is given; every model's Grad-CAM, attention and stream weights are
    taken for that class and averaged, and the mean CAM is scaled to peak 1 again.
    """
    if len(models) == 1:
        return explain(models[0], maps, target)
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m.eval()(maps.float()), dim=1) for m in models]).mean(dim=0)
    if target is None:
        target = probs.argmax(dim=1)
    parts = [explain(m, maps, target) for m in models]
    cam = torch.stack([p.cam for p in parts]).mean(dim=0)
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    cam = torch.where(peak > 1e-12, cam / peak, torch.zeros_like(cam))
    attention = {
        branch: {scale: torch.stack([p.attention[branch][scale] for p in parts]).mean(dim=0)
                 for scale in scales}
        for branch, scales in parts[0].attention.items()
        if all(branch in p.attention for p in parts)
    }
    weights = [p.stream_weights for p in parts]
    return Explanation(
        logits=torch.log(probs.clamp_min(1e-30)),
        probabilities=probs,
        target=parts[0].target,
        cam=cam,
        attention=attention,
        stream_names=parts[0].stream_names,
        stream_weights=None if any(w is None for w in weights) else torch.stack(weights).mean(dim=0),
    )
