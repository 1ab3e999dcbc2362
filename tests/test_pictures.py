"""Pictures: flow colours, attention, stream weights and Grad-CAM, looked at as numbers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from mefnet.datasets.clip_index import list_frames
from mefnet.inference.checkpoint import load_models
from mefnet.inference.explain import between_class_spread, explain
from mefnet.inference.inputs import ClipSpec
from mefnet.inference.pictures import (
    dataset_summary,
    flow_to_color,
    flow_wheel,
    fold_pictures,
    log_pictures,
    main,
)
from mefnet.inference.predict import Predictor
from mefnet.models import MODEL_FILE_BACKBONES
from mefnet.preprocessing.features import build_features
from tests.helpers import trained_am3f

MODELS = {cls.model_name: cls for cls in MODEL_FILE_BACKBONES}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    return trained_am3f(tmp_path_factory.getbasetemp() / "am3f-experiment")


@pytest.fixture(scope="module")
def held_out(experiment):
    """Per fold: (model, held-out maps, their labels) -- what --dataset pictures use."""
    models = load_models(experiment)
    index = instantiate(models[0].config["dataset"]["index"])
    features = build_features(index, models[0].preprocessing(), models[0].config["preprocessing"]["cache_dir"])
    out = []
    for m in models:
        rows = index.fold_indices(m.fold)[1]
        out.append((m, features[rows], torch.tensor([index[r].label for r in rows])))
    return index, out


def _png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable PNG"
    return image


# --------------------------------------------------------------------- colours


def test_flow_colours_code_direction_as_hue_and_speed_as_saturation():
    flow = np.zeros((4, 8, 2), np.float32)
    flow[0, 0] = (2, 0)      # right: red
    flow[0, 1] = (0, -2)     # up (image y grows downwards): hue 270 deg, violet
    flow[0, 2] = (-2, 0)     # left: cyan
    flow[0, 3] = (1, 0)      # right, half speed: pale red
    rgb = flow_to_color(flow)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 8, 3)
    hsv = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2HSV).astype(int)
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 2]) == (0, 255, 255)
    assert abs(hsv[0, 1, 0] - 135) <= 1 and hsv[0, 1, 1] == 255
    assert hsv[0, 3, 0] in (0, 179) and 120 <= hsv[0, 3, 1] <= 135  # half the saturation
    assert (rgb[1:] == 255).all()  # no motion: white
    wheel = flow_wheel(65)
    assert wheel.shape == (65, 65, 3) and tuple(wheel[32, 64]) == (255, 0, 0) and (wheel[0, 0] == 255).all()


# --------------------------------------------------------------------- explain


@pytest.mark.parametrize("name", sorted(MODELS))
def test_explain_leaves_the_model_alone_and_gives_bounded_maps(name):
    torch.manual_seed(0)
    model = MODELS[name](num_classes=3, in_channels=3, input_size=28).eval()
    maps = torch.rand(6, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(maps)
    e = explain(model, maps, target=2)
    with torch.no_grad():
        after = model(maps)
    assert torch.equal(e.logits, before) and torch.equal(after, before)
    assert not any(m._forward_hooks for m in model.modules())  # every hook removed
    assert e.cam.shape == (6, 28, 28) and e.cam.min() >= 0 and e.cam.max() <= 1
    assert (e.target == 2).all()
    assert all(e.cam[i].max() == 1 or e.cam[i].max() == 0 for i in range(6))
    if name == "am3f":
        assert set(e.attention) == {"u", "v", "strain"}
        sizes = [tuple(a.shape) for a in e.attention["u"].values()]
        assert sizes == [(6, 14, 14), (6, 7, 7), (6, 4, 4)]
        assert all(0 < float(a.min()) and float(a.max()) < 1 for s in e.attention.values() for a in s.values())
        assert e.stream_names == ["u", "v", "strain"]
        assert torch.allclose(e.stream_weights.sum(dim=1), torch.full((6,), 3.0))
        assert {b: tuple(a.shape) for b, a in e.attention_maps().items()} == {b: (6, 28, 28) for b in "u v strain".split()}
    else:
        assert e.attention == {} and e.stream_weights is None


def test_grad_cam_lights_up_where_the_class_evidence_is():
    """Zero input gives zero features (no biases before the pooled descriptor), so only
    the receptive field of one bright patch carries evidence for a class whose logit sums
    every feature: Grad-CAM must be high there and zero far from it."""
    torch.manual_seed(0)
    model = MODELS["am3f"](num_classes=3, in_channels=3, input_size=28, mofrw="off").eval()
    with torch.no_grad():
        model.classifier.weight[0] = 1.0
    maps = torch.zeros(1, 3, 28, 28)
    maps[:, :, 2:10, 18:26] = 1.0  # top right
    cam = explain(model, maps, target=0).cam[0]
    assert float(cam.max()) == 1.0
    assert float(cam[2:10, 18:26].mean()) > 0.5
    assert float(cam[18:, :10].max()) == 0.0  # bottom left, far from the patch


# ------------------------------------------------------- per-class statistics


def test_class_mean_attention_differs_between_classes_beyond_chance(experiment, held_out):
    summary, info = dataset_summary(experiment)
    index, folds = held_out
    assert info["clips"] == len(index) == 60 and summary.counts == index.class_counts()
    # The summary's class means are the plain means of each clip's attention.
    per_clip = {b: [] for b in ("u", "v", "strain")}
    labels = []
    for m, maps, y in folds:
        for b, a in explain(m.model, maps, target=y).attention_maps().items():
            per_clip[b].append(a.numpy())
        labels.append(y.numpy())
    labels = np.concatenate(labels)
    per_clip = {b: np.concatenate(v) for b, v in per_clip.items()}
    for b, a in per_clip.items():
        means = np.stack([a[labels == k].mean(axis=0) for k in range(3)])
        assert np.allclose(summary.attention[b], means, atol=1e-6)
        assert summary.attention[b].shape == (3, 28, 28)
        assert 0 < summary.attention[b].min() and summary.attention[b].max() < 1
    # Between-class spread against 99 label permutations (seeded): at least one branch's
    # attention separates the classes better than every shuffled labelling does.
    rng = np.random.default_rng(0)

    def spread(lab):
        return {b: between_class_spread(np.stack([a[lab == k].mean(0) for k in range(3)])) for b, a in per_clip.items()}

    true = spread(labels)
    shuffled = [spread(rng.permutation(labels)) for _ in range(99)]
    beaten = {b: sum(s[b] >= true[b] for s in shuffled) for b in true}
    assert min(beaten.values()) == 0, beaten
    # Stream weights per class: mean 1 over the streams, one row per class.
    assert summary.stream_weights.shape == (3, 3)
    assert np.allclose(summary.stream_weights.sum(axis=1), 3.0, atol=1e-5)


# ------------------------------------------------------------------ the command


def test_pictures_command_writes_what_it_promises(experiment, held_out, tmp_path, capsys):
    index, folds = held_out
    fold_model = folds[0][0]
    clip = index[index.fold_indices(fold_model.fold)[1][0]]
    out = tmp_path / "pictures"
    code = main([str(fold_model.path), "--frames", clip.frame_dir, "--onset", str(clip.onset),
                 "--apex", str(clip.apex), "--name", "c1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "pictures.json").read_text())
    (c,) = record["clips"]
    assert set(c["files"]) == {"onset_apex", "u", "v", "strain", "flow_color", "flow_color_raw", "attention",
                               "gradcam"}
    frame = cv2.imread(str(list_frames(clip.frame_dir)[clip.onset]))
    # the bare colour-wheel flow is an image of the crop (face=none: the whole frame) itself;
    # flow_color.png is the readable figure (face underneath, legend beside it)
    assert _png(out / "c1" / "flow_color_raw.png").shape == frame.shape
    assert _png(out / "c1" / "flow_color.png").shape == (480, 640, 3)
    assert _png(out / "flow_wheel.png").shape[0] >= 400
    for name in ("u", "v", "strain", "attention", "gradcam", "onset_apex"):
        image = _png(out / "c1" / f"{name}.png")
        assert image.shape[0] >= 300 and image.shape[1] >= 300 and image.std() > 10, name
    assert abs(sum(c["probabilities"].values()) - 1) < 1e-4 and c["cam_class"] == c["pred_name"]
    assert abs(sum(c["stream_weights"].values()) - 3) < 1e-3
    assert 0.05 < c["max_flow_px"] < 10
    # Nothing is overwritten unasked.
    assert main([str(fold_model.path), "--dataset", "--out", str(out)]) == 1
    assert "already holds pictures" in capsys.readouterr().err


def test_dataset_pictures_of_an_experiment(experiment, tmp_path):
    out = tmp_path / "classes"
    assert main([str(experiment), "--dataset", "--out", str(out)]) == 0
    record = json.loads((out / "pictures.json").read_text())["dataset"]
    assert record["models"] == 6 and record["clips"] == 60 and record["clips_used"].startswith("held-out")
    assert set(record["stream_weights"]) == {"negative", "positive", "surprise"}
    assert all(v > 0 for v in record["attention_between_class_spread"].values())
    assert record["face_underlay"] is True  # synthetic clips have frames: the mean apex face is drawn
    classes = _png(out / "class_attention.png")
    bars = _png(out / "stream_weights.png")
    assert classes.shape[0] > 3 * 150 and classes.std() > 10 and bars.std() > 10


def test_a_clip_explained_by_an_experiment_folder_averages_its_models(experiment, held_out, tmp_path, capsys):
    index, folds = held_out
    clip = index[0]
    frames = list_frames(clip.frame_dir)
    args = ["--images", str(frames[clip.onset]), str(frames[clip.apex]), "--name", "c"]
    # The experiment folder above the seed folder: all its seeds (here one), all folds.
    code = main([str(experiment.parent), *args, "--out", str(tmp_path / "p")])
    assert code == 0, capsys.readouterr().err
    (c,) = json.loads((tmp_path / "p" / "pictures.json").read_text())["clips"]
    assert len(c["model"]) == 6 and c["cam_class"] == c["pred_name"]
    # Its probabilities are the mean of the six fold models' on the clip's maps.
    predictor = Predictor.from_path(experiment.parent)
    spec = ClipSpec(name="c", onset="", images=(str(frames[clip.onset]), str(frames[clip.apex])))
    maps = torch.from_numpy(predictor.prepare(spec).pair.maps[None])
    expected = torch.stack([m.probabilities(maps) for m in predictor.models]).mean(0)[0]
    assert np.allclose(list(c["probabilities"].values()), expected.numpy(), atol=1e-5)
    assert main([str(experiment.parent), *args, "--seed", "7", "--out", str(tmp_path / "q")]) == 1
    assert "no run of seed 7; its seeds are 42" in capsys.readouterr().err


def _texts_fit(fig) -> list[str]:
    """Every non-empty text of ``fig`` (titles, labels, legends), after checking each lies
    inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    found = []
    from matplotlib.axes import Axes
    from matplotlib.figure import SubFigure

    candidates = []
    for ax in fig.findobj(Axes):
        candidates += [ax.title, *ax.texts]
        if ax.axison:
            candidates += [ax.xaxis.label, ax.yaxis.label]
        if ax.get_legend() is not None:
            candidates += ax.get_legend().get_texts()
    for sub in [fig, *fig.findobj(SubFigure)]:
        candidates += [*sub.texts, *([sub._suptitle] if sub._suptitle is not None else [])]
    for text in candidates:
        if not text.get_visible() or not text.get_text().strip():
            continue
        ext = text.get_window_extent(renderer)
        assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1 and ext.y0 >= box.y0 - 1 and ext.y1 <= box.y1 + 1, (
            f"'{text.get_text()}' does not fit in the figure")
        found.append(text.get_text())
    return found


def test_flow_figure_shows_the_face_a_direction_legend_and_a_fitting_title():
    from mefnet.inference.pictures import figure_flow_color, figure_flow_wheel, figure_gradcam

    face = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    flow = np.zeros((64, 64, 2), np.float32)
    flow[20:40, 20:40, 0] = 1.5  # a patch moving right
    flow[0, 0] = 50.0  # one outlier must not wash out the patch
    fig = figure_flow_color(face, flow, "a long clip name: onset -> apex flow of sub07/EP02_01f")
    texts = _texts_fit(fig)
    assert "a long clip name: onset -> apex flow of sub07/EP02_01f" in texts
    assert {"right", "down", "left", "up"} <= set(texts) and any("full colour = 1.50 px" in t for t in texts)
    fig.set_dpi(100)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3]
    assert image.shape[:2] == (480, 640)
    # The moving patch is red (flow to the right), the still face stays grey.
    red = (image[..., 0].astype(int) - image[..., 1] > 80) & (image[..., 0].astype(int) - image[..., 2] > 80)
    assert red.sum() > 2000
    wheel = _texts_fit(figure_flow_wheel())
    assert {"right", "up", "down", "left"} <= set(wheel) and any(t.startswith("flow colour: hue = direction") for t in wheel)
    cam = np.zeros((64, 64), np.float32)
    cam[10:20, 10:20] = 1
    assert "Grad-CAM: surprise (p=0.91)" in _texts_fit(figure_gradcam(face, cam, "Grad-CAM: surprise (p=0.91)"))


def _summary(branches: list[str], with_face: bool):
    from mefnet.inference.explain import ClassSummary

    rng = np.random.default_rng(0)
    face = np.tile(np.linspace(40, 220, 112, dtype=np.uint8), (112, 1)) if with_face else None
    return ClassSummary(class_names=["negative", "positive", "surprise"], counts=[10, 5, 3],
                        attention={b: rng.random((3, 28, 28)) for b in branches}, cam=rng.random((3, 28, 28)),
                        face=face)


@pytest.mark.parametrize("branches", [["u", "v", "strain"], []], ids=["am3f", "ststnet-grad-cam-only"])
def test_class_attention_draws_the_face_under_perceptual_maps_with_titles_that_fit(branches):
    from matplotlib.image import AxesImage

    from mefnet.inference.pictures import figure_class_attention

    fig = figure_class_attention(_summary(branches, with_face=True))
    texts = _texts_fit(fig)  # nothing clipped, also with one column
    assert "Per-class means (true class) over the mean apex face" in [" ".join(t.split()) for t in texts]
    assert "negative (n=10)\nGrad-CAM" in texts and "surprise (n=3)\nGrad-CAM" in texts
    assert all(f"positive (n=5)\n{b}" in texts for b in branches)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3 * (len(branches) + 1)
    for ax in panels:
        layers = [im.get_cmap().name for im in ax.findobj(AxesImage)]
        assert layers[0] == "gray" and layers[1] in {"viridis", "magma"}, layers
    bare = figure_class_attention(_summary(branches, with_face=False))
    assert "Per-class means (true class) over the network input" in [" ".join(t.split()) for t in _texts_fit(bare)]


def test_heat_maps_use_a_perceptual_colour_map():
    from mefnet.inference import pictures

    assert pictures.HEAT in {"magma", "inferno", "viridis", "cividis", "plasma"}
    assert "jet" not in Path(pictures.__file__).read_text()


# ------------------------------------------------------------------------ wandb


class _RecordingWandb:
    """Stands in for a WandbLogger (isinstance passes) and records log_image calls."""

    def __new__(cls):
        from lightning.pytorch.loggers import WandbLogger

        class Recording(WandbLogger):
            def __init__(self):  # no wandb run: only the calls are recorded
                self.calls = []

            def log_image(self, key, images, step=None, **kwargs):
                self.calls.append((key, list(images)))

        return Recording()


def test_fold_pictures_log_to_wandb_only_when_it_is_on(held_out, tmp_path):
    _, folds = held_out
    model, maps, labels = folds[0]
    assert fold_pictures([], model.model, maps, labels, model.class_names, tmp_path / "none") == {}
    assert not (tmp_path / "none").exists()
    wandb = _RecordingWandb()
    files = fold_pictures([object(), wandb], model.model, maps, labels, model.class_names, tmp_path / "fold")
    assert set(files) == {"class_attention", "stream_weights"}
    assert wandb.calls == [(f"pictures/{k}", [str(v)]) for k, v in files.items()]
    assert log_pictures([object()], files) == 0


@pytest.mark.slow
def test_pictures_reach_an_offline_wandb_run(held_out, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _, folds = held_out
    model, maps, labels = folds[0]
    logger = WandbLogger(project="mefnet", save_dir=str(tmp_path), offline=True, name="pictures-test")
    files = fold_pictures([logger], model.model, maps, labels, model.class_names, tmp_path / "fold")
    logger.finalize("success")
    logger.experiment.finish()
    logged = list(tmp_path.glob("wandb/offline-run-*/files/media/images/pictures/*.png"))
    assert {p.name.split("_")[0] for p in logged} >= {"class", "stream"} and len(logged) == len(files)


def test_an_image_too_small_to_explain_is_one_line_naming_it(experiment, tmp_path, capsys):
    # A 1x1 image reached OpenCV's resize inside the flow and ended in its traceback.
    cv2.imwrite(str(tmp_path / "a.png"), np.full((1, 1, 3), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((1, 1, 3), 120, np.uint8))
    code = main([str(experiment), "--onset", str(tmp_path / "a.png"), "--apex", str(tmp_path / "b.png"),
                 "--out", str(tmp_path / "pictures")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "cv2" not in err, err
    said = [line for line in err.splitlines() if "too small" in line]
    assert said == [f"mefnet-pictures: clip a: onset frame {tmp_path / 'a.png'} is 1x1 pixels, too small to crop "
                    "or compute optical flow on; expected an image of a face (at least 2x2 pixels)"], err
