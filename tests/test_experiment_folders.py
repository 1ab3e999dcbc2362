"""predict / pictures / export take a model file, a seed folder or an experiment folder
(every seed, or --seed); clips come as image pairs, image lists or GIFs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mefnet.config import compose
from mefnet.datasets.clip_index import list_frames
from mefnet.experiment.train import run
from mefnet.inference.checkpoint import (
    MODEL_FILE,
    ModelFileError,
    ensemble,
    load_models,
    model_files,
)
from mefnet.inference.export import main as export_main
from mefnet.inference.inputs import ClipSpec
from mefnet.inference.predict import Predictor
from mefnet.inference.predict import main as predict_main
from tests.helpers import tiny_overrides


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Path:
    """outputs/two-seeds/seed_1 and seed_2: a tiny STSTNet LOSO (4 folds) per seed."""
    base = tmp_path_factory.mktemp("seeds")
    for seed in (1, 2):
        run(compose(tiny_overrides(base, "two-seeds", f"seed={seed}")))
    return base / "outputs" / "two-seeds"


@pytest.fixture(scope="module")
def clip(seeds):
    """The onset and apex frame files of one synthetic clip."""
    models = load_models(seeds / "seed_1")
    from hydra.utils import instantiate

    c = instantiate(models[0].config["dataset"]["index"])[0]
    frames = list_frames(c.frame_dir)
    return frames[c.onset], frames[c.apex]


def _maps(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 28, 28, generator=torch.Generator().manual_seed(0))


def test_an_experiment_folder_means_every_seed_and_seed_chooses_one(seeds, tmp_path):
    every = model_files(seeds)
    assert len(every) == 8 and {p.parts[-5] for p in every} == {"seed_1", "seed_2"}
    only = model_files(seeds, seed=2)
    assert len(only) == 4 and all(p.parts[-5] == "seed_2" for p in only)
    assert model_files(seeds / "seed_2") == only == model_files(seeds / "seed_2", seed=2)
    cases = {
        (seeds, 3): "has no run of seed 3; its seeds are 1, 2",
        (seeds / "seed_1", 2): "is the run of seed 1, not --seed 2",
        (only[0], 1): "chooses among the seeds of an experiment folder",
        (tmp_path, None): "no experiment.json and no seed_<N>/experiment.json",
    }
    for (path, seed), message in cases.items():
        with pytest.raises(ModelFileError, match=message):
            model_files(path, seed)


def test_the_seeds_ensemble_averages_the_probabilities_of_all_their_fold_models(seeds):
    models = load_models(seeds)
    x = _maps()
    expected = torch.stack([m.probabilities(x) for m in models]).mean(0)
    assert torch.allclose(Predictor.from_path(seeds).probabilities(x), expected, atol=1e-6)
    joined = ensemble(models, seeds)
    assert joined.backbone_name == "ensemble of 8 ststnet"
    assert torch.allclose(joined.probabilities(x), expected, atol=1e-6)
    one_seed = torch.stack([m.probabilities(x) for m in load_models(seeds, 1)]).mean(0)
    assert torch.allclose(Predictor.from_path(seeds, seed=1).probabilities(x), one_seed, atol=1e-6)
    assert not torch.allclose(one_seed, expected)  # the two seeds' models differ


def _predict(args: list[str], capsys) -> tuple[int, dict]:
    code = predict_main(args)
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else {"stderr": out.err})


def test_predict_takes_an_image_pair_a_list_or_a_two_frame_gif_alike(seeds, clip, tmp_path, capsys):
    onset, apex = clip
    code, pair = _predict([str(seeds), "--onset", str(onset), "--apex", str(apex)], capsys)
    assert code == 0 and len(pair["model_files"]) == 8
    probs = pair["clips"][0]["probabilities"]
    listing = tmp_path / "clip.txt"
    listing.write_text(f"# onset, apex\n{onset}\n{apex}\n")
    grey = [np.asarray(Image.open(p).convert("L")) for p in (onset, apex)]
    for i, g in enumerate(grey):
        Image.fromarray(g).save(tmp_path / f"g{i}.png")
    gif = tmp_path / "clip.gif"
    Image.fromarray(grey[0]).save(gif, save_all=True, append_images=[Image.fromarray(grey[1])], duration=40)
    for args in (["--images", str(onset), str(apex)], ["--frames", str(listing)]):
        code, got = _predict([str(seeds), *args], capsys)
        assert code == 0 and got["clips"][0]["probabilities"] == probs, args
        assert (got["clips"][0]["onset"], got["clips"][0]["apex"]) == (0, 1)
    # A greyscale GIF is lossless: it predicts exactly as its frames saved as PNG.
    _, as_png = _predict([str(seeds), "--onset", str(tmp_path / "g0.png"), "--apex", str(tmp_path / "g1.png")], capsys)
    code, as_gif = _predict([str(seeds / "seed_1"), "--onset", str(gif)], capsys)
    code2, as_gif_all = _predict([str(seeds), "--onset", str(gif)], capsys)
    assert code == code2 == 0 and len(as_gif["model_files"]) == 4
    assert as_gif_all["clips"][0]["probabilities"] == as_png["clips"][0]["probabilities"]


def test_bad_gifs_and_lists_are_clip_errors_naming_the_file(seeds, clip, tmp_path, capsys):
    onset, _ = clip
    still = tmp_path / "still.gif"
    Image.open(onset).convert("L").save(still, save_all=True)
    listing = tmp_path / "clip.txt"
    listing.write_text(f"{onset}\nmissing.png\n")
    short = tmp_path / "one.txt"
    short.write_text(f"{onset}\n")
    for args, message in (
        (["--onset", str(still)], "has no later frame to use as the apex"),
        (["--frames", str(listing)], f"{listing}, line 2: image {tmp_path / 'missing.png'} does not exist"),
        (["--frames", str(short)], "names 1 image(s); expected at least two"),
    ):
        code, got = _predict([str(seeds), *args], capsys)
        assert code == 1 and message in got["clips"][0]["error"], got


def test_export_of_an_experiment_folder_is_the_probability_ensemble(seeds, tmp_path, capsys):
    out = tmp_path / "ensemble.ts"
    assert export_main([str(seeds), "--seed", "2", "--torchscript", str(out)]) == 0
    assert "ensemble of 4 models" in capsys.readouterr().out
    loaded = torch.jit.load(str(out), _extra_files=(extra := {"mefnet.json": ""}))
    meta = json.loads(extra["mefnet.json"])
    assert len(meta["members"]) == 4 and meta["backbone"] == "ensemble of 4 ststnet"
    x = _maps()
    expected = torch.stack([m.probabilities(x) for m in load_models(seeds, 2)]).mean(0)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(loaded(x), dim=1), expected, atol=1e-5)
    single = tmp_path / "single.ts"
    assert export_main([str(model_files(seeds, 1)[0]), "--torchscript", str(single)]) == 0
    assert MODEL_FILE in json.loads(_meta(single))["members"][0]


def _meta(path: Path) -> str:
    extra = {"mefnet.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    return extra["mefnet.json"]


@pytest.mark.realdata
def test_the_real_two_frame_gif_predicts_like_its_two_frames(seeds, realdata, tmp_path, capsys):
    gif = realdata / "frames" / "onset_apex_pairs" / "s03_s03_po_11.gif"
    if not gif.is_file():
        pytest.skip(f"{gif} is absent")
    paths = []
    with Image.open(gif) as im:
        for i in range(2):
            im.seek(i)
            paths.append(tmp_path / f"f{i}.png")
            im.convert("RGB").save(paths[-1])
    _, pair = _predict([str(seeds), "--onset", str(paths[0]), "--apex", str(paths[1])], capsys)
    code, got = _predict([str(seeds), "--onset", str(gif)], capsys)
    assert code == 0 and got["clips"][0]["probabilities"] == pair["clips"][0]["probabilities"]


def test_clip_spec_images_need_two(tmp_path):
    from mefnet.inference.inputs import ClipError, prepare_clip

    one = tmp_path / "one.png"
    Image.new("L", (8, 8)).save(one)
    with pytest.raises(ClipError, match="at least two images"):
        prepare_clip(ClipSpec(name="x", onset="", images=(str(one),)), None)
    with pytest.raises(ClipError, match=f"image {tmp_path / 'two.png'} does not exist"):
        prepare_clip(ClipSpec(name="x", onset="", images=(str(one), str(tmp_path / "two.png"))), None)
