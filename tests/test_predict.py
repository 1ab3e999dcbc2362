"""The model file and mefnet-predict: safe loading, inputs as in training, per-clip errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from mefnet.config import compose
from mefnet.datasets.apex import spot_apex
from mefnet.experiment.train import run
from mefnet.inference.checkpoint import (
    FORMAT,
    MODEL_FILE,
    ModelFileError,
    load_model,
    load_models,
    save_model,
)
from mefnet.inference.inputs import ClipSpec
from mefnet.inference.predict import Predictor, main
from mefnet.preprocessing.features import build_features
from tests.conftest import missing_realdata
from tests.helpers import tiny_overrides, trained_am3f

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    return trained_am3f(tmp_path_factory.getbasetemp() / "am3f-experiment")


@pytest.fixture(scope="module")
def fold_model(experiment) -> Path:
    return next(iter(sorted(experiment.glob(f"folds/*/*/{MODEL_FILE}"))))


@pytest.fixture(scope="module")
def dataset(fold_model):
    """(clip index, training features) of the experiment, as training made them."""
    loaded = load_model(fold_model)
    index = instantiate(loaded.config["dataset"]["index"])
    features = build_features(index, loaded.preprocessing(), loaded.config["preprocessing"]["cache_dir"])
    return index, features


def _predictions(fold_dir: Path) -> dict[str, list[float]]:
    with (fold_dir / "predictions.csv").open(newline="") as f:
        return {r["clip"]: [float(r[k]) for k in r if k.startswith("prob_")] for r in csv.DictReader(f)}


def _run_main(args: list[str], capsys) -> tuple[int, dict | None, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


# ------------------------------------------------------------------ model file


def test_model_file_is_plain_data_and_reproduces_the_fold_predictions(fold_model, dataset):
    raw = torch.load(fold_model, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == 1
    assert all(isinstance(v, torch.Tensor) for v in raw["state_dict"].values())
    assert json.loads(raw["config"])["backbone"]["_target_"] == "mefnet.models.am3f.AM3FFlowNet"

    loaded = load_model(fold_model)
    assert loaded.class_names == ["negative", "positive", "surprise"] and not loaded.model.training
    index, features = dataset
    test_rows = index.fold_indices(loaded.fold)[1]
    probs = loaded.probabilities(features[test_rows])
    stored = _predictions(fold_model.parent)
    for row, p in zip(test_rows, probs.tolist(), strict=True):
        assert p == pytest.approx(stored[index[row].clip], abs=2e-6)


@pytest.fixture(scope="module")
def lightning_checkpoint(tmp_path_factory) -> Path:
    """One fold run with the Lightning checkpoint on and the model file off."""
    base = tmp_path_factory.mktemp("ckpt")
    cfg = compose(tiny_overrides(base, "ckpt", "fold=sub01", "save_checkpoint=true", "save_model=false"))
    run(cfg)
    return Path(cfg.experiment_dir) / "folds" / "synthetic" / "sub01" / "model.ckpt"


def test_save_model_false_writes_no_model_file(lightning_checkpoint):
    assert lightning_checkpoint.is_file() and not (lightning_checkpoint.parent / MODEL_FILE).exists()


def test_files_that_are_not_mefnet_models_are_refused_with_their_name(tmp_path, lightning_checkpoint):
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    pickled = tmp_path / "objects.pt"
    torch.save({"format": FORMAT, "payload": Path("/etc")}, pickled)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    cases = {
        text: "not a PyTorch file",
        pickled: "Python objects other than tensors",
        other: f"expected format '{FORMAT}'",
        tmp_path / "absent.pt": "does not exist",
        lightning_checkpoint: "model.pt",
    }
    for path, why in cases.items():
        with pytest.raises(ModelFileError) as err:
            load_model(path)
        assert str(path) in str(err.value) and why in str(err.value)


def test_a_model_file_cannot_name_code_to_run(tmp_path, fold_model):
    loaded = load_model(fold_model)
    config = {**loaded.config, "backbone": {**loaded.config["backbone"], "_target_": "os.system"}}
    path = save_model(tmp_path / "evil.pt", loaded.model, config, loaded.class_names)
    with pytest.raises(ModelFileError, match="'os.system' is not a registered backbone"):
        load_model(path)


def test_an_experiment_folder_averages_its_fold_models(experiment, tmp_path):
    maps = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    models = load_models(experiment)
    assert len(models) == 6 and len({m.fold for m in models}) == 6
    predictor = Predictor.from_path(experiment)
    expected = torch.stack([m.probabilities(maps) for m in models]).mean(0)
    assert torch.allclose(predictor.probabilities(maps), expected)
    with pytest.raises(ModelFileError, match="not a mefnet experiment"):
        load_models(tmp_path)


# --------------------------------------------------------------- real GIF pair


@pytest.fixture(scope="module")
def gif_frames(realdata, tmp_path_factory) -> tuple[Path, Path]:
    gif = realdata / "frames" / "onset_apex_pairs" / "s03_s03_po_11.gif"
    if not gif.is_file():
        missing_realdata(f"{gif} is absent")
    out = tmp_path_factory.mktemp("gif")
    paths = []
    with Image.open(gif) as im:
        for i, name in enumerate(("s03_po_11_onset.png", "s03_po_11_apex.png")):
            im.seek(i)
            im.convert("RGB").save(out / name)
            paths.append(out / name)
    return paths[0], paths[1]


@pytest.mark.realdata
def test_predict_on_a_real_pair_prints_json(fold_model, gif_frames, capsys):
    onset, apex = gif_frames
    code, result, err = _run_main([str(fold_model), "--onset", str(onset), "--apex", str(apex),
                                   "--name", "s03_po_11"], capsys)
    assert code == 0, err
    assert result["failed"] == 0 and result["warnings"] == []
    assert result["preprocessing"]["face"] == "none"  # as the model was trained
    (clip,) = result["clips"]
    assert clip["clip"] == "s03_po_11" and clip["apex_source"] == "given"
    assert clip["face_crop"] == [263, 314]  # face=none: the whole canvas
    probs = clip["probabilities"]
    assert list(probs) == result["class_names"] and sum(probs.values()) == pytest.approx(1, abs=1e-4)
    assert clip["pred_name"] == max(probs, key=probs.get)


@pytest.mark.slow
def test_the_console_script_exits_with_the_clip_status(fold_model, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mefnet.inference.predict", str(fold_model),
               "--onset", str(tmp_path / "absent.png"), "--apex", str(tmp_path / "absent2.png")]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["failed"] == 1 and "cannot read image" in proc.stderr


@pytest.mark.realdata
def test_face_override_crops_the_real_face_and_warns(fold_model, gif_frames, capsys):
    onset, apex = gif_frames
    code, result, err = _run_main([str(fold_model), "--onset", str(onset), "--apex", str(apex),
                                   "--face", "haar"], capsys)
    assert code == 0
    assert "face crop overridden" in result["warnings"][0] and "face crop overridden" in err
    assert result["preprocessing"]["face"]["method"] == "haar"
    h, w = result["clips"][0]["face_crop"]
    assert h == w and 120 < h < 263  # a square around the face, inside the 314x263 canvas


# ---------------------------------------------------------- frames and videos


def test_a_frame_folder_gives_exactly_the_training_input_and_prediction(fold_model, dataset):
    index, features = dataset
    loaded = load_model(fold_model)
    predictor = Predictor([loaded])
    row = index.fold_indices(loaded.fold)[1][0]
    clip = index[row]
    spec = ClipSpec(name=clip.clip, onset=str(clip.onset), apex=str(clip.apex), frames=clip.frame_dir)
    prepared = predictor.prepare(spec)
    assert np.array_equal(prepared.pair.maps, features[row].numpy())
    (result,) = predictor.predict([spec])
    assert result["apex"] == clip.apex and result["apex_source"] == "given"
    stored = _predictions(fold_model.parent)[clip.clip]
    assert list(result["probabilities"].values()) == pytest.approx(stored, abs=2e-6)


def test_the_apex_is_spotted_when_not_given(fold_model, dataset):
    index, _ = dataset
    clip = index[0]
    predictor = Predictor([load_model(fold_model)])
    (result,) = predictor.predict([ClipSpec(name="c", onset=str(clip.onset), frames=clip.frame_dir)])
    from mefnet.datasets.clip_index import list_frames

    frames = list_frames(clip.frame_dir)
    assert result["apex_source"] == "spotted"
    assert result["apex"] == spot_apex(frames, clip.onset, max(frames)) and result["apex"] > clip.onset


def test_a_lossless_video_predicts_like_its_frame_folder(fold_model, dataset, tmp_path):
    index, _ = dataset
    clip = index[3]
    from mefnet.datasets.clip_index import list_frames

    frames = list_frames(clip.frame_dir)
    first = min(frames)
    video = tmp_path / "clip.avi"
    size = cv2.imread(str(frames[first])).shape[1::-1]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 25, size)
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1 video")
    for n in sorted(frames):
        writer.write(cv2.imread(str(frames[n])))
    writer.release()
    predictor = Predictor([load_model(fold_model)])
    from_video, from_folder = predictor.predict([
        ClipSpec(name="video", onset=str(clip.onset - first), frames=str(video)),
        ClipSpec(name="folder", onset=str(clip.onset), frames=clip.frame_dir),
    ])
    assert from_video["apex"] - 0 == from_folder["apex"] - first
    assert from_video["probabilities"] == from_folder["probabilities"]


# ------------------------------------------------------- batch and bad inputs


def test_batch_mode_reports_each_bad_clip_and_predicts_the_rest(fold_model, dataset, tmp_path, capsys):
    index, _ = dataset
    clip = index[0]
    from mefnet.datasets.clip_index import list_frames

    frames = list_frames(clip.frame_dir)
    onset, apex = frames[clip.onset], frames[clip.apex]
    (tmp_path / "broken.png").write_text("not an image")
    rows = [
        ["clip", "onset", "apex", "frames", "offset"],
        ["good-pair", str(onset), str(apex), "", ""],
        ["good-folder", str(clip.onset), "", clip.frame_dir, ""],
        ["unreadable", "broken.png", str(apex), "", ""],
        ["missing", "absent.png", str(apex), "", ""],
        ["same-file", str(onset), str(onset), "", ""],
        ["same-frame", str(clip.onset), str(clip.onset), clip.frame_dir, ""],
        ["not-a-number", "first", "", clip.frame_dir, ""],
        ["no-such-frame", "9999", "", clip.frame_dir, ""],
    ]
    listing = tmp_path / "clips.csv"
    with listing.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "result.json"
    code, _, err = _run_main([str(fold_model), "--batch", str(listing), "--out", str(out)], capsys)
    assert code == 1 and "6 of 8 clips failed" in err
    result = json.loads(out.read_text())
    clips = {c["clip"]: c for c in result["clips"]}
    assert [c["clip"] for c in result["clips"]] == [r[0] for r in rows[1:]]
    assert result["failed"] == 6
    for good in ("good-pair", "good-folder"):
        assert "error" not in clips[good] and sum(clips[good]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert clips["good-folder"]["apex_source"] == "spotted"
    expect = {
        "unreadable": ("row 4", "broken.png", "cannot read image"),
        "missing": ("row 5", "absent.png", "cannot read image"),
        "same-file": ("row 6", "same file", "no motion"),
        "same-frame": ("row 7", f"same frame ({clip.onset})", "no motion"),
        "not-a-number": ("row 8", "'first' is not a frame number"),
        "no-such-frame": ("row 9", "onset frame 9999 is not in"),
    }
    for name, parts in expect.items():
        for part in parts:
            assert part in clips[name]["error"], (name, clips[name]["error"])
    # the output file is never overwritten unasked
    code, _, err = _run_main([str(fold_model), "--batch", str(listing), "--out", str(out)], capsys)
    assert code == 1 and "exists" in err


def test_no_face_found_is_a_clip_error(fold_model, tmp_path):
    rng = np.random.default_rng(0)
    blank = rng.integers(100, 110, (96, 96), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), blank)
    cv2.imwrite(str(tmp_path / "b.png"), np.roll(blank, 1, axis=1))
    predictor = Predictor([load_model(fold_model)], face="haar")
    (result,) = predictor.predict([ClipSpec(name="wall", onset=str(tmp_path / "a.png"), apex=str(tmp_path / "b.png"))])
    assert "no face found" in result["error"] and "clip wall" in result["error"]


def test_identical_onset_and_apex_images_are_refused(fold_model, dataset, tmp_path):
    index, _ = dataset
    from mefnet.datasets.clip_index import list_frames

    image = cv2.imread(str(list_frames(index[0].frame_dir)[index[0].onset]))
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), image)
    (result,) = Predictor([load_model(fold_model)]).predict(
        [ClipSpec(name="still", onset=str(tmp_path / "a.png"), apex=str(tmp_path / "b.png"))])
    assert "identical" in result["error"]


def test_a_bad_clip_list_or_model_stops_before_predicting(fold_model, tmp_path, capsys):
    listing = tmp_path / "clips.csv"
    listing.write_text("clip,onset,apex_frame\nx,1,2\n")
    code, result, err = _run_main([str(fold_model), "--batch", str(listing)], capsys)
    assert code == 1 and result is None and "row 1 (header)" in err and "apex_frame" in err
    code, result, err = _run_main([str(listing), "--onset", "a.png", "--apex", "b.png"], capsys)
    assert code == 1 and result is None and f"{listing} is not a mefnet model file" in err


def test_a_flow_folder_model_warns_that_frames_need_a_face_crop(fold_model, tmp_path):
    loaded = load_model(fold_model)
    config = {**loaded.config, "dataset": {**loaded.config["dataset"], "name": "flow_folder"}}
    path = save_model(tmp_path / "flows.pt", loaded.model, config, loaded.class_names)
    assert "precomputed flow images" in Predictor.from_path(path).warnings[0]
    assert Predictor.from_path(path, face="haar").preprocessing.face == "haar"


def test_seeds_that_are_not_one_experiment_are_refused_as_the_table_refuses_them(experiment, tmp_path, capsys):
    # Same rule as mefnet-table (experiment_differences across seeds): averaging the models of
    # two different experiments under one name would be an ensemble nobody asked for.
    import shutil

    root = tmp_path / "two-seeds"
    for seed in (1, 2):
        shutil.copytree(experiment, root / f"seed_{seed}")
        record_path = root / f"seed_{seed}" / "experiment.json"
        record = json.loads(record_path.read_text())
        record["seed"] = record["config"]["seed"] = seed
        if seed == 2:
            record["config"]["optimizer"]["lr"] = record["config"]["optimizer"]["lr"] * 10
        record_path.write_text(json.dumps(record))
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), image)
    code, result, err = _run_main([str(root), "--onset", str(tmp_path / "a.png"), "--apex", str(tmp_path / "b.png")],
                                  capsys)
    lines = err.strip().splitlines()
    assert code == 1 and result is None and len(lines) == 1, err
    assert "seed_1" in lines[0] and "seed_2" in lines[0] and "not seeds of one experiment" in lines[0]
    assert "optimizer.lr" in lines[0] and "Traceback" not in err


def test_an_image_too_small_to_crop_or_predict_is_one_line_naming_it(fold_model, tmp_path, capsys):
    # A 1x1 image reached OpenCV's resize inside the flow and ended in its traceback.
    cv2.imwrite(str(tmp_path / "a.png"), np.full((1, 1, 3), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((1, 1, 3), 120, np.uint8))
    code, result, err = _run_main([str(fold_model), "--onset", str(tmp_path / "a.png"),
                                   "--apex", str(tmp_path / "b.png")], capsys)
    assert code == 1 and "Traceback" not in err and "cv2" not in err, err
    said = [line for line in err.splitlines() if "too small" in line]
    assert said == [f"mefnet-predict: clip a: onset frame {tmp_path / 'a.png'} is 1x1 pixels, too small to crop "
                    "or compute optical flow on; expected an image of a face (at least 2x2 pixels)"], err
    assert result["failed"] == 1 and "1x1 pixels" in result["clips"][0]["error"]


def test_frames_too_small_for_the_flow_method_are_a_clip_error_not_an_opencv_one():
    from mefnet.datasets.clip_index import DatasetError
    from mefnet.preprocessing.features import Preprocessing, pair_maps

    prep = Preprocessing.from_config(compose(["preprocessing.face=none", "preprocessing.flow.method=dis"]).preprocessing)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(2))
    with pytest.raises(DatasetError, match=r"^clip7: optical flow cannot be computed on 8x8-pixel frames \(OpenCV: "):
        pair_maps(a, b, prep, "clip7")
