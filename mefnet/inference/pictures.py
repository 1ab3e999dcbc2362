"""``mefnet-pictures``: flow, strain, attention and class-activation pictures as PNG files.

::

    # one clip (same inputs as mefnet-predict): flow and where the network looks
    mefnet-pictures outputs/<experiment>/seed_<seed>/folds/<dataset>/<subject>/model.pt \\
        --onset onset.png --apex apex.png --out pictures/
    # per-class pictures over a whole LOSO experiment: every fold's model on its own
    # held-out test subject
    mefnet-pictures outputs/<experiment> --dataset --out pictures/

Per clip, in ``<out>/<clip>/``:

``onset_apex.png``   the (face-cropped) onset and apex frames the flow is computed on
``u.png``, ``v.png``, ``strain.png``  flow components (pixels) and optical strain
``flow_color.png``   the flow in the colour-wheel coding (hue = direction, saturation =
                     speed relative to the clip's fastest pixel) over the face, with the
                     direction legend beside it; ``flow_color_raw.png`` the bare colour
                     image at the crop's size (white = still); ``flow_wheel.png`` (in
                     ``<out>``) the legend on its own
``attention.png``    AM3F-FlowNet's spatial attention, per branch and scale, on the apex
``gradcam.png``      Grad-CAM of the predicted class on the apex face

With ``--dataset``, in ``<out>``:

``class_attention.png``  mean spatial attention (per branch) and Grad-CAM of the true class,
                         one row per class
``stream_weights.png``   MOFRW stream weights per class (mean and standard deviation)

Figures are PNG at 100 dpi unless ``--format pdf|svg`` (vector files) or ``--dpi`` chose
otherwise; ``flow_color_raw.png`` stays a PNG (the raw colour image, one pixel per pixel).

``pictures.json`` lists every file with the numbers behind the pictures (predictions,
class counts, stream weights). :func:`log_pictures` logs pictures to wandb runs, and
:func:`fold_pictures` makes the per-class pictures of one LOSO fold and logs them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mefnet.datasets.clip_index import DatasetError
from mefnet.inference.checkpoint import LoadedModel, ModelFileError, load_model, model_files
from mefnet.inference.explain import ClassAccumulator, ClassSummary, Explanation, explain_ensemble
from mefnet.inference.inputs import ClipError, ClipListError, PreparedClip
from mefnet.inference.predict import (
    Predictor,
    _specs_from_args,
    add_input_arguments,
    add_seed_argument,
)
from mefnet.preprocessing.features import build_features, clip_inputs, read_image
from mefnet.preprocessing.flow import optical_strain
from mefnet.utils.figure_output import FORMATS, add_figure_arguments, figure_output, save
from mefnet.utils.quiet import plural

DPI = 100


# ----------------------------------------------------------------------- arrays


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """``(H, W, 2)`` flow as an ``(H, W, 3)`` uint8 RGB image: hue = direction (0 deg, flow to
    the right, is red; 90 deg, downwards in image coordinates, is yellow-green), saturation
    = magnitude / ``max_magnitude`` (default: the largest in the image), value = 255, so
    zero flow is white."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(u, v)
    top = float(max_magnitude) if max_magnitude else float(magnitude.max())
    angle = (np.degrees(np.arctan2(v, u)) + 360.0) % 360.0
    hsv = np.empty((*u.shape, 3), np.uint8)
    hsv[..., 0] = np.round(angle / 2.0).astype(np.int64) % 180  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(np.round(255.0 * magnitude / top), 0, 255) if top > 0 else 0
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def flow_wheel(size: int = 128) -> np.ndarray:
    """The legend of :func:`flow_to_color`: a disc whose pixel at offset (dx, dy) from the
    centre shows the colour of flow (dx, dy); white outside the disc."""
    r = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = np.stack([x - r, y - r], axis=-1)
    img = flow_to_color(flow, max_magnitude=r)
    img[np.hypot(x - r, y - r) > r] = 255
    return img


def _grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# ---------------------------------------------------------------------- figures


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` in the format and resolution of the command (``--format``, ``--dpi``;
    :mod:`mefnet.utils.figure_output`): ``path``'s suffix follows the format."""

    FigureCanvasAgg(fig)
    return save(fig, path)


def save_rgb(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB image as a PNG file (its folder created); ``OSError`` if it cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def figure_map(values: np.ndarray, title: str, symmetric: bool, unit: str = "px") -> Figure:
    """One map with a colour bar; ``symmetric`` centres a diverging scale on 0."""
    fig = Figure(figsize=(4, 3.6))
    ax = fig.add_subplot()
    if symmetric:
        lim = float(np.abs(values).max()) or 1.0
        im = ax.imshow(values, cmap=DIVERGING, vmin=-lim, vmax=lim)
    else:
        im = ax.imshow(values, cmap=MAPS, vmin=0.0)
    ax.set_title(title)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=unit)
    fig.tight_layout()
    return fig


def figure_onset_apex(onset: np.ndarray, apex: np.ndarray, name: str) -> Figure:
    """The onset frame, the apex frame and their absolute grey-level difference, side by side."""
    fig = Figure(figsize=(7, 3.6))
    panels = [(onset, "onset"), (apex, "apex"),
              (np.abs(_grey(apex).astype(np.float32) - _grey(onset).astype(np.float32)), "|apex - onset|")]
    for k, (img, title) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, k)
        if img.ndim == 3:
            ax.imshow(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        else:
            ax.imshow(img, cmap="gray" if k < 3 else "magma")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(name)
    fig.tight_layout()
    return fig


# Perceptually uniform colour maps (lightness grows with the value), readable in grey print
# and by colour-blind readers: HEAT for attention and Grad-CAM over the face, MAPS for
# unsigned maps (strain), DIVERGING for signed ones (u, v) centred on 0.
HEAT = "magma"
MAPS = "viridis"
DIVERGING = "coolwarm"
FLOW_FIGSIZE = (6.4, 4.8)


def figure_flow_color(face: np.ndarray, flow: np.ndarray, title: str) -> Figure:
    """The flow in colour-wheel coding over the face, with its direction legend beside it.

    The face (grey) is drawn first; the flow colours go on top with an opacity that grows
    with the speed, so still regions show the face and moving ones show their direction.
    """
    fig = Figure(figsize=FLOW_FIGSIZE, layout="constrained")
    main, legend = fig.subfigures(1, 2, width_ratios=[3, 1.15])
    ax = main.subplots()
    h, w = face.shape[:2]
    speed = np.hypot(flow[..., 0], flow[..., 1])
    # Full colour at the 99th percentile of the speed: one fast pixel (a border artefact)
    # must not wash out the rest of the face.
    top = float(np.percentile(speed, 99)) or float(speed.max())
    colour = flow_to_color(flow, max_magnitude=top or None)
    rgba = np.dstack([colour, np.clip(255 * speed / (top or 1.0), 0, 220).astype(np.uint8)])
    ax.imshow(_grey(face), cmap="gray", extent=(0, w, h, 0))
    ax.imshow(rgba, extent=(0, w, h, 0), interpolation="bilinear")
    ax.set_title(title, fontsize=10, wrap=True)
    ax.axis("off")
    _wheel_axes(legend.subplots(), f"direction\n(full colour = {top:.2f} px)")
    return fig


def _wheel_axes(ax, title: str) -> None:
    wheel = flow_wheel(129)
    ax.imshow(wheel, extent=(-1, 1, 1, -1))
    for (dx, dy), label in (((1, 0), "right"), ((0, 1), "down"), ((-1, 0), "left"), ((0, -1), "up")):
        ax.annotate("", xy=(0.8 * dx, 0.8 * dy), xytext=(0, 0),
                    arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2})
        ax.text(1.3 * dx, 1.3 * dy, label, ha="center" if dx == 0 else ("left" if dx > 0 else "right"),
                va="center", fontsize=8)
    ax.set_xlim(-1.9, 1.9)
    ax.set_ylim(1.6, -1.6)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def figure_flow_wheel() -> Figure:
    """The colour-wheel legend on its own: hue = direction, saturation = speed, white = still."""
    fig = Figure(figsize=(4.2, 4.4), layout="constrained")
    _wheel_axes(fig.subplots(), "flow colour: hue = direction of motion,\n"
                                "saturation = speed (white = still)")
    return fig


def _overlay(ax, face: np.ndarray, heat: np.ndarray, title: str, vmin: float = 0.0, vmax: float = 1.0,
             cmap: str = HEAT, fontsize: float = 9):
    h, w = face.shape[:2]
    ax.imshow(_grey(face), cmap="gray", extent=(0, w, h, 0))
    im = ax.imshow(heat, cmap=cmap, alpha=0.55, vmin=vmin, vmax=vmax, extent=(0, w, h, 0),
                   interpolation="bilinear")
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")
    return im


def _range(maps) -> tuple[float, float]:
    values = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return (lo, hi) if hi > lo else (lo - 1e-3, hi + 1e-3)


def figure_attention(apex: np.ndarray, explanation: Explanation, index: int = 0) -> Figure | None:
    """Spatial attention per branch (rows) and scale (columns), plus their mean, on the apex.

    One colour scale for all panels, from the smallest to the largest weight shown (the
    colour bar gives the values): attention weights of a trained network often vary by a
    few hundredths only, which a 0..1 scale would hide.
    """
    if not explanation.attention:
        return None
    branches = list(explanation.attention)
    scales = list(explanation.attention[branches[0]])
    means = explanation.attention_maps()
    panels = [[(f"{b} {s} ({explanation.attention[b][s].shape[-1]}px)", explanation.attention[b][s][index].numpy())
               for s in scales] + [(f"{b} mean", means[b][index].numpy())] for b in branches]
    vmin, vmax = _range(m for row in panels for _, m in row)
    fig = Figure(figsize=(2.2 * (len(scales) + 1) + 1.0, 2.3 * len(branches) + 0.5), layout="constrained")
    axes = fig.subplots(len(branches), len(scales) + 1, squeeze=False)
    im = None
    for r, row in enumerate(panels):
        for c, (title, heat) in enumerate(row):
            im = _overlay(axes[r, c], apex, heat, title, vmin, vmax)
    fig.colorbar(im, ax=axes, fraction=0.03, label="attention weight")
    fig.suptitle("AM3F-FlowNet spatial attention on the apex frame")
    return fig


def figure_gradcam(apex: np.ndarray, cam: np.ndarray, title: str) -> Figure:
    """The apex frame beside its Grad-CAM overlay (0..1, with a colour bar)."""
    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    axes[0].imshow(_grey(apex), cmap="gray")
    axes[0].set_title("apex")
    axes[0].axis("off")
    im = _overlay(axes[1], apex, cam, title)
    fig.colorbar(im, ax=axes, fraction=0.03, label="Grad-CAM (0..1)")
    return fig


def figure_class_attention(summary: ClassSummary) -> Figure:
    """Rows: classes; columns: mean attention per branch (one colour scale, min..max, viridis),
    then the mean Grad-CAM (0..1, magma), each over the mean cropped apex face of the clips
    explained (``summary.face``; the bare maps when there is none, e.g. flow-folder data).
    A narrow figure (STSTNet: the Grad-CAM column only) breaks its title over two lines, so
    every title fits."""
    branches = list(summary.attention)
    columns = [*branches, "Grad-CAM"]
    rows = [i for i, n in enumerate(summary.counts) if n > 0]
    face = getattr(summary, "face", None)
    fig = Figure(figsize=(2.3 * len(columns) + 1.8, 2.3 * len(rows) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    vmin, vmax = _range(summary.attention[b][k] for b in branches for k in rows) if branches else (0, 1)
    im_att = im_cam = None
    for r, k in enumerate(rows):
        for c, col in enumerate(columns):
            ax = axes[r, c]
            title = f"{summary.class_names[k]} (n={summary.counts[k]})\n{col}"
            cam = col == "Grad-CAM"
            heat = summary.cam[k] if cam else summary.attention[col][k]
            lo, hi, cmap = (0.0, 1.0, HEAT) if cam else (vmin, vmax, MAPS)
            if face is not None:
                im = _overlay(ax, face, heat, title, lo, hi, cmap=cmap, fontsize=8)
            else:
                im = ax.imshow(heat, cmap=cmap, vmin=lo, vmax=hi)
                ax.set_title(title, fontsize=8)
                ax.axis("off")
            if cam and not float(np.nanmax(np.asarray(heat, dtype=np.float64), initial=0.0)) > 0:
                ax.text(0.5, 0.5, "Grad-CAM is zero:\nno region raises this\nclass's score", ha="center",
                        va="center", fontsize=7, color="white", transform=ax.transAxes,
                        bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"})
            im_att, im_cam = (im_att, im) if cam else (im, im_cam)
    if im_att is not None:
        fig.colorbar(im_att, ax=axes[:, :-1], fraction=0.03, label="mean attention")
    fig.colorbar(im_cam, ax=axes[:, -1], fraction=0.08, label="mean Grad-CAM")
    over = "over the mean apex face" if face is not None else "over the network input"
    fig.suptitle(f"Per-class means (true class){' ' if len(columns) > 2 else chr(10)}{over}", fontsize=10)
    return fig


def figure_stream_weights(summary: ClassSummary) -> Figure | None:
    """Grouped bars: for each class, the mean MOFRW weight of every stream (1 = uniform)."""
    if summary.stream_weights is None:
        return None
    rows = [i for i, n in enumerate(summary.counts) if n > 0]
    k = len(summary.stream_names)
    fig = Figure(figsize=(1.6 + 1.3 * len(rows), 3.4))
    ax = fig.add_subplot()
    width = 0.8 / k
    x = np.arange(len(rows))
    for j, stream in enumerate(summary.stream_names):
        ax.bar(x + (j - (k - 1) / 2) * width, summary.stream_weights[rows, j], width,
               yerr=summary.stream_weights_std[rows, j], capsize=3, label=stream)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [f"{summary.class_names[i]}\n(n={summary.counts[i]})" for i in rows])
    ax.set_ylabel("stream weight (mean 1)")
    ax.set_title("MOFRW stream weights per class")
    ax.legend(title="stream", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------- writers


def clip_pictures(prepared: PreparedClip, model: LoadedModel | list[LoadedModel], out_dir: str | Path,
                  target: int | None = None) -> dict:
    """Write one clip's pictures into ``out_dir``; returns the files and the numbers.

    ``model`` is one model, or several (an experiment's fold models) whose explanations
    are averaged for the class their mean probability predicts
    (:func:`~mefnet.inference.explain.explain_ensemble`).
    """
    models = model if isinstance(model, list) else [model]
    model = models[0]
    out = Path(out_dir)
    pair = prepared.pair
    x = torch.from_numpy(pair.maps[None])
    # The probabilities as mefnet-predict gives them (mean over the models, each with its
    # own test-time options); the explanations are of their predicted class (or target).
    mean = torch.stack([m.probabilities(x) for m in models]).mean(dim=0)
    chosen = int(mean[0].argmax()) if target is None else target
    e = explain_ensemble([m.model for m in models], x, target=chosen)
    probs = mean[0].tolist()
    t = int(e.target[0])
    canvas = canvas_mask(pair.onset)  # display only: the network's input is untouched
    masked = " (canvas masked)" if canvas.any() else ""
    flow = np.stack([mask_saliency(pair.flow[..., c], canvas) for c in range(2)], axis=-1)
    files = {
        "onset_apex": save_figure(figure_onset_apex(pair.onset, pair.apex, prepared.spec.name), out / "onset_apex.png"),
        "u": save_figure(figure_map(flow[..., 0], "u (horizontal flow)" + masked, True), out / "u.png"),
        "v": save_figure(figure_map(flow[..., 1], "v (vertical flow)" + masked, True), out / "v.png"),
        "strain": save_figure(figure_map(mask_saliency(_strain(pair.flow), canvas), "optical strain" + masked,
                                         False, "strain"), out / "strain.png"),
        "flow_color": save_figure(
            figure_flow_color(pair.apex, pair.flow, f"{prepared.spec.name}: onset -> apex flow"),
            out / "flow_color.png"),
        "flow_color_raw": save_rgb(flow_to_color(pair.flow), out / "flow_color_raw.png"),
    }
    att = figure_attention(pair.apex, e)
    if att is not None:
        files["attention"] = save_figure(att, out / "attention.png")
    files["gradcam"] = save_figure(
        figure_gradcam(pair.apex, mask_saliency(e.cam[0].numpy(), canvas, renormalize=True),
                       f"Grad-CAM: {model.class_names[t]} (p={probs[t]:.2f}){masked}"),
        out / "gradcam.png")
    record = {
        **prepared.describe(),
        "model": str(model.path) if len(models) == 1 else [str(m.path) for m in models],
        "pred_name": model.class_names[int(np.argmax(probs))],
        "probabilities": dict(zip(model.class_names, [round(p, 6) for p in probs], strict=True)),
        "cam_class": model.class_names[t],
        "max_flow_px": round(float(np.hypot(pair.flow[..., 0], pair.flow[..., 1]).max()), 4),
        "canvas_masked": round(float(canvas.mean()), 4),
        "files": {k: str(v) for k, v in files.items()},
    }
    if e.stream_weights is not None:
        record["stream_weights"] = dict(zip(e.stream_names, [round(float(w), 4) for w in e.stream_weights[0]],
                                            strict=True))
    return record


def canvas_mask(face: np.ndarray, tolerance: int = 2, grow: float = 0.03) -> np.ndarray:
    """True where the face crop shows a uniform canvas (the plain background a face was
    pasted on, e.g. the published GIFs' light canvas): pixels within ``tolerance`` grey
    levels of the crop border's most common value, connected to that border, grown by
    ``grow`` of the crop's side. The face's edge against such a canvas is not motion, yet
    flow, strain and Grad-CAM light up on it; the pictures mask it off. All False when the
    border is not mostly one value (a natural background)."""
    grey = _grey(face)
    grey = grey.astype(np.int16) if grey.dtype == np.uint8 else np.round(grey).astype(np.int16)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    values, counts = np.unique(border, return_counts=True)
    mode = int(values[counts.argmax()])
    if np.abs(border - mode).__le__(tolerance).mean() < 0.25:
        return np.zeros(grey.shape, dtype=bool)
    candidate = (np.abs(grey - mode) <= tolerance).astype(np.uint8)
    _, labels = cv2.connectedComponents(candidate, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    mask = np.isin(labels, edge[edge > 0]) & candidate.astype(bool)
    k = max(1, round(grow * max(grey.shape)))
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)).astype(bool)


def mask_saliency(values: np.ndarray, mask: np.ndarray, renormalize: bool = False) -> np.ndarray:
    """``values`` (any resolution) with the canvas ``mask`` (the crop's resolution) set to
    0; ``renormalize``: rescaled so the largest value left is 1 (Grad-CAM's 0..1)."""
    if not mask.any():
        return values
    if mask.shape != values.shape[:2]:
        mask = cv2.resize(mask.astype(np.float32), (values.shape[1], values.shape[0]),
                          interpolation=cv2.INTER_AREA) > 0.5
    out = np.where(mask, 0.0, values).astype(values.dtype)
    top = float(out.max()) if out.size else 0.0
    return out / top if renormalize and top > 0 else out


def _strain(flow: np.ndarray) -> np.ndarray:
    return optical_strain(flow[..., 0], flow[..., 1])


def class_pictures(summary: ClassSummary, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """Write ``class_attention.png`` and (AM3F-FlowNet with MOFRW) ``stream_weights.png``."""
    out = Path(out_dir)
    files = {"class_attention": save_figure(figure_class_attention(summary), out / f"{prefix}class_attention.png")}
    bars = figure_stream_weights(summary)
    if bars is not None:
        files["stream_weights"] = save_figure(bars, out / f"{prefix}stream_weights.png")
    return files


# ------------------------------------------------------------------ dataset level


def _dataset_index(config: dict):
    from hydra.utils import instantiate

    spec = dict(config["dataset"]["index"])
    target = str(spec.get("_target_", ""))
    if not target.startswith("mefnet.datasets."):
        raise ModelFileError(f"dataset adapter '{target}' is not one of mefnet's; refusing to call it")
    return instantiate(spec)


def mean_face(index, rows: list[int], prep, size: int = 112, max_clips: int = 32) -> np.ndarray | None:
    """The mean grey apex face of up to ``max_clips`` of the clips ``rows`` (evenly spread),
    cropped as in training and resized to ``size`` x ``size``: the underlay of the per-class
    pictures. None for clips without frames (flow folders) or when no frame can be read."""
    chosen = sorted(set(rows))
    if len(chosen) > max_clips:
        chosen = [chosen[int(k)] for k in np.linspace(0, len(chosen) - 1, max_clips)]
    total, n = np.zeros((size, size), np.float64), 0
    for i in chosen:
        clip = index[i]
        if clip.flow_path:
            return None
        try:
            files = clip_inputs(clip)
            onset, apex = read_image(files[0]), read_image(files[1])
            cropper = prep.face_cropper(clip.dataset)
            if cropper is not None:
                onset, apex = cropper.crop_pair(onset, apex, clip.clip_key)
        except (DatasetError, OSError):
            continue
        total += cv2.resize(_grey(apex), (size, size), interpolation=cv2.INTER_AREA)
        n += 1
    return (total / n).astype(np.uint8) if n else None


def dataset_summary(model_path: str | Path, cache_dir: str | None = None, all_clips: bool = False,
                    seed: int | None = None, say: Callable[[str], None] | None = None) -> tuple[ClassSummary, dict]:
    """Per-class means over the clips each model did not train on.

    ``model_path`` is a seed or experiment folder (every fold's model on its held-out test
    subject: the whole dataset, each clip seen by a model that never trained on it; with
    several seeds each clip is counted once per seed, or only ``seed``) or one model file (its own held-out subject; ``all_clips=True``: every clip of its dataset,
    training clips included). A partial run explains the test subjects of the folds that
    have a model (``say`` is told how many).
    """
    # The fold models, never the final one: each explains only the subject it never saw.
    models = [load_model(p) for p in model_files(model_path, seed, final=False, say=say)]
    config = models[0].config
    index = _dataset_index(config)
    prep = models[0].preprocessing()
    cache = cache_dir or config["preprocessing"]["cache_dir"]
    features = build_features(index, prep, cache, n_jobs=1)
    labels = torch.tensor([c.label for c in index], dtype=torch.long)
    acc = ClassAccumulator(list(index.class_names))
    used = 0
    explained: list[int] = []
    for m in models:
        if all_clips:
            rows = list(range(len(index)))
        else:
            if not m.fold:
                raise ModelFileError(f"{m.path} does not record its fold; use all_clips")
            rows = index.fold_indices(m.fold)[1]
        acc.add(m.model, features[rows], labels[rows])
        used += len(rows)
        explained += rows
    summary = acc.summary()
    summary.face = mean_face(index, explained, prep)
    info = {"models": len(models), "clips": used, "face_underlay": summary.face is not None,
            "clips_used": "all clips (training clips included)" if all_clips else "held-out test clips of each fold"}
    return summary, info


# ------------------------------------------------------------------------ wandb


def log_pictures(loggers, pictures: dict[str, str | Path], prefix: str = "pictures") -> int:
    """Log PNG files to every Weights & Biases logger among ``loggers`` (Lightning loggers,
    e.g. ``trainer.loggers``); returns how many images were logged (0 without wandb)."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - lightning is a dependency
        return 0
    count = 0
    for lg in loggers or []:
        if not isinstance(lg, WandbLogger):
            continue
        for name, path in pictures.items():
            lg.log_image(key=f"{prefix}/{name}", images=[str(path)])
            count += 1
    return count


def fold_pictures(loggers, backbone: torch.nn.Module, maps: torch.Tensor, labels, class_names: list[str],
                  out_dir: str | Path) -> dict[str, Path]:
    """The per-class pictures of one fold's test clips, written to ``out_dir`` and logged to
    wandb when a WandbLogger is among ``loggers``; does nothing (returns {}) without one."""
    from lightning.pytorch.loggers import WandbLogger

    if not any(isinstance(lg, WandbLogger) for lg in loggers or []):
        return {}
    acc = ClassAccumulator(list(class_names))
    acc.add(backbone, maps, labels)
    files = class_pictures(acc.summary(), out_dir)
    log_pictures(loggers, files)
    return files


# -------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``mefnet-pictures``)."""
    ap = argparse.ArgumentParser(prog="mefnet-pictures", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  mefnet-pictures outputs/megc2019-am3f --onset pair.gif --out pictures/",
                                 description="Flow, strain, attention and Grad-CAM pictures of a trained model.")
    ap.add_argument("model", help="a model.pt, a seed folder or an experiment folder (folds and seeds: "
                                  "explanations averaged for the ensemble's class)")
    add_input_arguments(ap)
    add_seed_argument(ap)
    ap.add_argument("--dataset", action="store_true",
                    help="per-class pictures over the model's dataset (held-out clips of each fold)")
    ap.add_argument("--all-clips", action="store_true",
                    help="with --dataset and one model file: use every clip, training clips included")
    ap.add_argument("--cache-dir", help="with --dataset: the flow cache (default: the one used in training)")
    ap.add_argument("--target", help="class whose Grad-CAM to draw (default: the predicted class)")
    ap.add_argument("--out", required=True, help="folder for the PNG files (created; must not hold pictures)")
    ap.add_argument("--overwrite", action="store_true", help="replace pictures already in --out")
    add_figure_arguments(ap)
    a = ap.parse_args(argv)
    with figure_output(a.format, a.dpi):
        return _pictures(a, ap)


def _pictures(a: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    wants_clips = bool(a.onset or a.batch or a.frames or a.images)
    if not wants_clips and not a.dataset:
        ap.error("give a clip (--onset/--apex, --images, --frames, a GIF, --batch) and/or --dataset")
    out = Path(a.out)
    start = time.perf_counter()

    def say(line: str) -> None:
        print(f"mefnet-pictures: {line}", file=sys.stderr, flush=True)

    try:
        if out.exists() and any(p.suffix[1:] in FORMATS for p in out.rglob("*")) and not a.overwrite:
            raise FileExistsError(f"{out} already holds pictures; choose another --out or pass --overwrite")
        record: dict = {"model": str(a.model), "warnings": []}
        failed = 0
        if wants_clips:
            specs = _specs_from_args(a, ap)
            predictor = Predictor.from_path(a.model, face=a.face, seed=a.seed, final=not a.folds, say=say)
            record["warnings"] = list(predictor.warnings)
            for w in predictor.warnings:
                print(f"mefnet-pictures: warning: {w}", file=sys.stderr)
            model = predictor.models[0]
            say(f"{plural(len(specs), 'clip')} with {predictor.models_line()}: {predictor.steps_line()}, then "
                f"the frames, u / v / strain, flow colour, attention and Grad-CAM pictures -> {out}/")
            if len(predictor.models) > 1:
                say(f"explaining with {len(predictor.models)} models averaged "
                    f"(Grad-CAM and attention: the mean over the models)")
            target = None
            if a.target is not None:
                if a.target not in model.class_names:
                    raise ValueError(f"--target '{a.target}' is not one of {model.class_names}")
                target = model.class_names.index(a.target)
            clips = []
            used: set[str] = set()
            for k, spec in enumerate(specs, start=1):
                folder = _safe_name(spec.name, used)
                say(f"[{k}/{len(specs)}] {spec.name} -> {out / folder}/")
                try:
                    prepared = predictor.prepare(spec, a.spot_stride)
                    clips.append(clip_pictures(prepared, predictor.models, out / folder, target))
                except ClipError as e:
                    print(f"mefnet-pictures: {e}", file=sys.stderr)
                    clips.append({"clip": spec.name, "error": str(e)})
                    failed += 1
            save_figure(figure_flow_wheel(), out / "flow_wheel.png")
            record["clips"] = clips
        if a.dataset:
            say("per-class pictures: each fold model explains the clips of its own test subject "
                "(input maps from the flow cache; computed first where missing)" if not a.all_clips
                else "per-class pictures over every clip of the model's dataset (training clips included)")
            summary, info = dataset_summary(a.model, a.cache_dir, a.all_clips, a.seed, say=say)
            say(f"{info['clips']} clips explained by {plural(info['models'], 'model')}")
            files = class_pictures(summary, out)
            record["dataset"] = {**info, **summary.to_dict(), "files": {k: str(v) for k, v in files.items()}}
        record["failed"] = failed
        out.mkdir(parents=True, exist_ok=True)
        (out / "pictures.json").write_text(json.dumps(record, indent=2) + "\n")
    except (ModelFileError, ClipListError, FileExistsError, ValueError) as e:
        print(f"mefnet-pictures: {e}", file=sys.stderr)
        return 1  # refused input: one line, exit status 1, as every mefnet command (argparse's usage errors: 2)
    print(f"pictures written to {out} in {time.perf_counter() - start:.1f} s (index: {out / 'pictures.json'})")
    return 1 if failed else 0


def _safe_name(name: str, used: set[str]) -> str:
    base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._") or "clip"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    used.add(candidate)
    return candidate


if __name__ == "__main__":
    sys.exit(main())
