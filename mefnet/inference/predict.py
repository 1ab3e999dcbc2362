"""``mefnet-predict``: run a trained model on new clips and print JSON.

::

    mefnet-predict MODEL --onset onset.png --apex apex.png          # an image pair
    mefnet-predict MODEL --frames clip_folder/ --onset 117 [--apex 123] [--offset 130]
    mefnet-predict MODEL --frames recording.mp4 --onset 40 [--apex 52] [--offset 90]
    mefnet-predict MODEL --batch clips.csv [--out predictions.json]

``MODEL`` is a fold's ``model.pt`` or a whole experiment folder: then every fold's model
predicts and their class probabilities are averaged. Face crop, flow, strain, size and
normalization come from the model file's stored config; ``--face`` overrides the face
crop (with a warning), e.g. for a model trained on precomputed flows of cropped faces.

Exit status: 0 when every clip was predicted, 1 when some clip failed (its entry in the
JSON holds ``error``), 2 when nothing could run (bad arguments, not a model file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mefnet.inference.checkpoint import FINAL_DIR, LoadedModel, ModelFileError, load_models
from mefnet.inference.inputs import (
    GIF_SUFFIXES,
    LIST_SUFFIXES,
    ClipError,
    ClipListError,
    ClipSpec,
    PreparedClip,
    prepare_clip,
    read_clip_list,
)
from mefnet.preprocessing.features import FACE_METHODS, Preprocessing
from mefnet.utils.files import atomic_write
from mefnet.utils.quiet import plural


class Predictor:
    """One model, or the fold models of one experiment, with their preprocessing.

    Args:
        models: loaded model files (:func:`~mefnet.inference.checkpoint.load_models`).
        face: override the stored ``preprocessing.face`` (``none``, ``landmarks``, ``haar``).
    """

    def __init__(self, models: list[LoadedModel], face: str | None = None, source: str | Path | None = None) -> None:
        if not models:
            raise ValueError("Predictor needs at least one model")
        self.models = models
        self.source = str(source or models[0].path)
        self.class_names = list(models[0].class_names)
        if str((models[0].config.get("task") or {}).get("name", "emotion")) == "au":
            raise ValueError(
                f"{self.source} is an action-unit model (task=au, outputs {self.class_names}); "
                "mefnet-predict reads emotion models only for now"
            )
        self.warnings: list[str] = []
        prep: Preprocessing = models[0].preprocessing()
        config = models[0].config
        dataset = str(config.get("dataset", {}).get("name", ""))
        if face is not None and face != prep.face:
            if face not in FACE_METHODS:
                raise ValueError(f"--face: '{face}' is not one of {', '.join(FACE_METHODS)}")
            self.warnings.append(
                f"face crop overridden: the model was trained with preprocessing.face={prep.face}, "
                f"predicting with face={face}; the inputs match training only if this crops the "
                "frames the way the training data was cropped"
            )
            prep = replace(prep, face=face)
            prep.face_cropper()  # bad face_options for this method fail here, once
        elif dataset == "flow_folder" and face is None:
            self.warnings.append(
                "this model was trained on precomputed flow images (dataset=flow_folder), made from "
                "cropped faces; mefnet computes the flow on the frames as given (face=none): pass "
                "--face landmarks or --face haar unless the frames are already cropped faces"
            )
        self.preprocessing = prep

    @classmethod
    def from_path(cls, path: str | Path, face: str | None = None, seed: int | None = None,
                  final: bool = True, say: Callable[[str], None] | None = None) -> Predictor:
        """A model file, a seed folder (its final model when it has one and ``final``, else
        its fold models: those that exist in a partial run, ``say`` told how many) or an
        experiment folder (the same for every seed, or for ``seed``), averaged in probability."""
        return cls(load_models(path, seed, final, say), face=face, source=path)

    def describe(self) -> dict:
        first = self.models[0]
        return {
            "model": self.source,
            "model_files": [str(m.path) for m in self.models],
            "backbone": first.backbone_name,
            "class_names": self.class_names,
            "preprocessing": self.preprocessing.describe(),
        }

    def models_line(self) -> str:
        """Which models predict, in words: ``the final model of seed_42 (every subject)``,
        ``16 fold models of seed_42, averaged``, ``model.pt``."""
        paths = [Path(m.path) for m in self.models]
        finals = [p for p in paths if p.parent.name == FINAL_DIR]
        seeds = sorted({p.parent.parent.name if p in finals else p.parents[3].name
                        for p in paths if len(p.parents) > 3})
        where = f" of {', '.join(seeds)}" if seeds and Path(self.source).is_dir() else ""
        if len(paths) == 1 and not finals:
            return f"{self.models[0].backbone_name} model {paths[0]}"
        if finals and len(finals) == len(paths):
            what = "the final model" if len(finals) == 1 else f"{len(finals)} final models"
            return f"{what}{where} (trained on every subject){', averaged' if len(finals) > 1 else ''}"
        return f"{len(paths)} {self.models[0].backbone_name} fold models{where}, averaged"

    def steps_line(self) -> str:
        """What happens to each clip, in words."""
        d = self.preprocessing.describe()
        face = d["face"] if isinstance(d["face"], str) else (d["face"] or {}).get("method", "as configured")
        flow = d["flow"].get("method", "flow") if isinstance(d["flow"], dict) else str(d["flow"])
        return f"face crop ({face}), {flow} optical flow and strain at {d['size']}x{d['size']}"

    @torch.no_grad()
    def probabilities(self, maps: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, classes)``: the mean over the models' softmax outputs."""
        return torch.stack([m.probabilities(maps) for m in self.models]).mean(dim=0)

    def prepare(self, spec: ClipSpec, spot_stride: int = 1) -> PreparedClip:
        return prepare_clip(spec, self.preprocessing, spot_stride)

    def predict(self, specs: list[ClipSpec], spot_stride: int = 1, say=None) -> list[dict]:
        """One result per clip, in order: the prediction, or ``{"clip", "error"}``.
        ``say(line)``: told which clip is being prepared (a batch of several clips)."""
        results: list[dict] = []
        # Only the small input maps are kept: a batch of long clips must not hold every
        # clip's full-resolution frames and flow in memory.
        ready: list[tuple[int, np.ndarray]] = []
        for k, spec in enumerate(specs, start=1):
            if say is not None and len(specs) > 1:
                say(f"[{k}/{len(specs)}] {spec.name}")
            try:
                prepared = self.prepare(spec, spot_stride)
            except ClipError as e:
                results.append({"clip": spec.name, "error": str(e)})
                continue
            ready.append((len(results), prepared.pair.maps))
            results.append(prepared.describe())
        if ready:
            maps = torch.from_numpy(np.stack([m for _, m in ready]))
            probs = self.probabilities(maps)
            for (slot, _), p in zip(ready, probs.tolist(), strict=True):
                best = max(range(len(p)), key=p.__getitem__)
                results[slot].update(
                    pred=best,
                    pred_name=self.class_names[best],
                    probabilities={n: round(float(x), 6) for n, x in zip(self.class_names, p, strict=True)},
                )
        return results


def _specs_from_args(a: argparse.Namespace, ap: argparse.ArgumentParser) -> list[ClipSpec]:
    if a.batch:
        if a.onset or a.apex or a.frames or a.offset or a.images:
            ap.error("--batch lists the clips; do not combine it with --onset/--apex/--frames/--offset")
        return read_clip_list(a.batch)
    if a.images:
        if a.onset and not a.onset.isdigit() or a.frames:
            ap.error("--images lists the frames (onset first); do not combine it with --frames or an onset image")
        name = a.name or Path(a.images[0]).stem
        return [ClipSpec(name=name, onset=a.onset or "", apex=a.apex or "", images=tuple(a.images))]
    if a.onset and not a.apex and not a.frames and Path(a.onset).suffix.lower() in GIF_SUFFIXES + LIST_SUFFIXES:
        a.frames, a.onset = a.onset, ""  # --onset clip.gif: the GIF (or list) holds the frames
    if not a.onset and not (a.frames and Path(a.frames).suffix.lower() in GIF_SUFFIXES + LIST_SUFFIXES):
        ap.error("give --onset and --apex images, --images, a GIF, --frames with --onset, or --batch")
    if a.frames:
        name = a.name or Path(a.frames).name
        return [ClipSpec(name=name, onset=a.onset, apex=a.apex or "", frames=a.frames, offset=a.offset or "")]
    if a.offset:
        ap.error("--offset needs --frames")
    if not a.apex:
        ap.error("--apex is needed with an onset image (or give --frames to spot the apex)")
    return [ClipSpec(name=a.name or Path(a.onset).stem, onset=a.onset, apex=a.apex)]


def _write_json(data: dict, out: str | None, overwrite: bool) -> None:
    text = json.dumps(data, indent=2)
    if not out:
        print(text)
        return
    path = Path(out)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another --out or pass --overwrite")
    atomic_write(path, text + "\n")


def add_input_arguments(ap: argparse.ArgumentParser) -> None:
    """The clip and preprocessing options shared by mefnet-predict and mefnet-pictures."""
    ap.add_argument("--onset", help="onset image; with --frames, the onset frame number")
    ap.add_argument("--apex", help="apex image; with --frames, the apex frame number (default: spotted)")
    ap.add_argument("--frames", help="a folder of numbered frames, a video, an animated GIF or an image list "
                                     "(.txt, one image per line); videos, GIFs and lists number frames from 0")
    ap.add_argument("--images", nargs="+", metavar="IMAGE",
                    help="the clip's images in order, onset first: two are the onset and apex; with more, "
                         "the apex is --apex (a number from 0) or spotted")
    ap.add_argument("--offset", help="with --frames: the last frame to spot the apex in (default: the last frame)")
    ap.add_argument("--batch", help="CSV list of clips: clip,onset,apex,frames,offset (see the README)")
    ap.add_argument("--name", help="the clip's name in the output (default: from the file names)")
    ap.add_argument("--face", choices=FACE_METHODS,
                    help="override the model's face crop (warned about); default: as in training")
    ap.add_argument("--spot-stride", type=int, default=1,
                    help="when spotting the apex, look at every n-th frame (default 1)")


def add_seed_argument(ap: argparse.ArgumentParser) -> None:
    """``--seed``: which seed of an experiment folder (default: all of them); ``--folds``: the
    LOSO fold models even where a final model (``mefnet-train fold=none``) exists."""
    ap.add_argument("--seed", type=int,
                    help="with an experiment folder: use only the models of this seed (default: every seed)")
    ap.add_argument("--folds", action="store_true",
                    help="with a folder: use the LOSO fold models even when a final model (trained on every "
                         "subject with fold=none, in <seed folder>/final/) exists; by default the final model is used")


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``mefnet-predict``)."""
    ap = argparse.ArgumentParser(
        prog="mefnet-predict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mefnet-predict outputs/megc2019-am3f --onset onset.png --apex apex.png",
        description="Predict micro-expression classes of new clips with a trained mefnet model.",
    )
    ap.add_argument("model", help="a model.pt, a seed folder (outputs/<experiment>/seed_42) or an experiment "
                                  "folder (outputs/<experiment>: every seed); folders average their models")
    add_input_arguments(ap)
    add_seed_argument(ap)
    ap.add_argument("--out", help="write the JSON here (default: standard output)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    a = ap.parse_args(argv)

    def say(line: str) -> None:
        print(f"mefnet-predict: {line}", file=sys.stderr, flush=True)

    try:
        specs = _specs_from_args(a, ap)
        predictor = Predictor.from_path(a.model, face=a.face, seed=a.seed, final=not a.folds, say=say)
        if a.out and Path(a.out).exists() and not a.overwrite:
            raise FileExistsError(f"{a.out} exists; choose another --out or pass --overwrite")
    except (ModelFileError, ClipListError, FileExistsError, ValueError) as e:
        print(f"mefnet-predict: {e}", file=sys.stderr)
        return 1  # refused input: one line, exit status 1, as every mefnet command (argparse's usage errors: 2)
    for w in predictor.warnings:
        print(f"mefnet-predict: warning: {w}", file=sys.stderr)
    start = time.perf_counter()
    say(f"{plural(len(specs), 'clip')} with {predictor.models_line()}; each clip: {predictor.steps_line()}")
    clips = predictor.predict(specs, spot_stride=a.spot_stride, say=say)
    errors = [c["error"] for c in clips if "error" in c]
    for e in errors:
        print(f"mefnet-predict: {e}", file=sys.stderr)
    _write_json({**predictor.describe(), "warnings": predictor.warnings, "failed": len(errors), "clips": clips},
                a.out, a.overwrite)
    if errors:
        print(f"mefnet-predict: {len(errors)} of {len(clips)} clips failed (see their 'error')", file=sys.stderr)
    say(f"{plural(len(clips) - len(errors), 'clip')} predicted in {time.perf_counter() - start:.1f} s"
        + (f", written to {a.out}" if a.out else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
