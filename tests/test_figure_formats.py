"""--format pdf|svg|png and --dpi for every figure command, through the console entry points;
the files written are opened."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import TINY_SYNTHETIC
from tests.test_first_hour import mefnet


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("figures")
    done = mefnet("mefnet-train", *TINY_SYNTHETIC, "trainer.max_epochs=1", "logger=csv", "experiment_name=figs",
                  cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    exp = base / "outputs" / "figs" / "seed_42"
    frames = sorted(sorted((base / "data" / "synthetic").glob("*/sub01/clip*"))[0].glob("img*.png"))
    clip = ["--onset", str(frames[0]), "--apex", str(frames[len(frames) // 2])]
    return base, exp, clip


def is_svg(path: Path) -> bool:
    return ET.parse(path).getroot().tag.endswith("svg")


def is_pdf(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]


@pytest.mark.parametrize("fmt, check", [("pdf", is_pdf), ("svg", is_svg)])
def test_pictures_as_vector_files(run, fmt, check):
    base, exp, clip = run
    model = sorted(exp.glob("folds/*/*/model.pt"))[0]
    done = mefnet("mefnet-pictures", str(model), *clip, "--format", fmt, "--out", f"pictures_{fmt}", cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted((base / f"pictures_{fmt}").rglob(f"*.{fmt}"))
    assert {p.stem for p in written} >= {"onset_apex", "u", "v", "strain", "flow_color", "gradcam", "flow_wheel"}
    assert all(check(p) for p in written)
    # The raw colour image stays one pixel per pixel; no other PNG is written.
    assert [p.name for p in (base / f"pictures_{fmt}").rglob("*.png")] == ["flow_color_raw.png"]


def test_dpi_sets_the_raster_size(run):
    base, exp, clip = run
    model = sorted(exp.glob("folds/*/*/model.pt"))[0]
    sizes = {}
    for dpi in (100, 300):
        done = mefnet("mefnet-pictures", str(model), *clip, "--dpi", str(dpi), "--out", f"p{dpi}", cwd=base)
        assert done.returncode == 0, done.stderr[-3000:]
        with Image.open(next((base / f"p{dpi}").rglob("u.png"))) as img:
            sizes[dpi] = img.size
    assert sizes[300][0] == pytest.approx(3 * sizes[100][0], abs=3)
    assert sizes[300][1] == pytest.approx(3 * sizes[100][1], abs=3)


def test_the_table_figures_as_svg_and_curves_of_what_was_logged(run):
    base, exp, clip = run
    done = mefnet("mefnet-table", str(exp), "--curves", "--format", "svg", "--out", "table_svg", cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    out = base / "table_svg"
    assert is_svg(out / "confusion_figs.svg") and is_svg(out / "curves_figs.svg")
    assert not list(out.glob("*.png"))
    assert "confusion_*.svg" in done.stdout and "curves_*.svg" in done.stdout
    # fixed_epochs logs no validation: the curves figure is the loss panel alone.
    assert len(ET.parse(out / "curves_figs.svg").getroot().findall(".//{http://www.w3.org/2000/svg}g[@id='axes_2']")) == 0
    assert len(ET.parse(out / "curves_figs.svg").getroot().findall(".//{http://www.w3.org/2000/svg}g[@id='axes_1']")) == 1
    png = mefnet("mefnet-table", str(exp), "--dpi", "200", "--out", "table_png", cwd=base)
    assert png.returncode == 0, png.stderr[-3000:]
    with Image.open(base / "table_png" / "confusion_figs.png") as img:
        assert img.size == (2000, 920)


def test_a_uniform_canvas_around_the_face_is_masked_and_a_natural_background_is_not():
    import numpy as np

    from mefnet.inference.pictures import canvas_mask, mask_saliency

    rng = np.random.default_rng(0)
    face = np.full((60, 60), 240, np.uint8)
    face[10:50, 15:45] = rng.integers(40, 200, (40, 30))  # the face, pasted on a light canvas
    mask = canvas_mask(face)
    assert mask[0, 0] and mask[55, 30] and not mask[30, 30]
    assert mask[30, 16]  # the face's edge on the canvas: grown into the mask
    assert not canvas_mask(rng.integers(0, 255, (60, 60)).astype(np.uint8)).any()
    cam = np.ones((28, 28), np.float32)
    cam[0, 0] = 5.0  # the brightest spot sits on the canvas
    masked = mask_saliency(cam, mask, renormalize=True)
    assert masked[0, 0] == 0 and masked.max() == 1.0 and masked[14, 14] == 1.0


def test_saliency_stays_off_the_canvas_of_a_landmark_cropped_gif(run, realdata, tmp_path):
    import json

    import numpy as np

    from mefnet.inference.inputs import ClipSpec
    from mefnet.inference.pictures import _strain, canvas_mask, mask_saliency
    from mefnet.inference.predict import Predictor

    pytest.importorskip("dlib")
    base, exp, _ = run
    gif = realdata / "frames" / "onset_apex_pairs" / "s03_s03_po_11.gif"
    model = sorted(exp.glob("folds/*/*/model.pt"))[0]
    done = mefnet("mefnet-pictures", str(model), "--onset", str(gif), "--face", "landmarks", "--out", "gif",
                  cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    (clip,) = json.loads((base / "gif" / "pictures.json").read_text())["clips"]
    assert 0.05 < clip["canvas_masked"] < 0.7  # the light canvas beside and below the face
    # The same crop in-process: strain peaks on the face/canvas edge, and the mask removes it.
    prepared = Predictor.from_path(model, face="landmarks").prepare(ClipSpec(name="gif", onset="", frames=str(gif)))
    strain, mask = _strain(prepared.pair.flow), canvas_mask(prepared.pair.onset)
    assert strain[mask].max() > np.percentile(strain[~mask], 99)
    assert mask_saliency(strain, mask)[mask].max() == 0
