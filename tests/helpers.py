"""Small configs shared by tests that train."""

from __future__ import annotations

from pathlib import Path

TINY_SYNTHETIC = [
    "dataset.index.num_subjects=4",
    "dataset.index.num_clips=18",
    "dataset.index.frame_size=48",
    "dataset.index.frames_per_clip=[5,6]",
    "trainer.max_epochs=3",
    "preprocessing.n_jobs=1",
    "logger=none",
    "save_checkpoint=false",
]


# pretrain=synthetic on a handful of tiny synthetic clips (a few seconds).
TINY_PRETRAIN = [
    "pretrain=synthetic",
    "pretrain.epochs=2",
    "pretrain.data.index.num_clips=12",
    "pretrain.data.index.num_subjects=3",
    "pretrain.data.index.frame_size=48",
    "pretrain.data.index.frames_per_clip=[5,6]",
]


# dataset=synthetic_multi: three tiny synthetic datasets (3 subjects, 12 clips each), the
# training sizes of TINY_SYNTHETIC, for the cross-dataset protocols and the AU task.
MULTI_PARTS = ("synth_a", "synth_b", "synth_c")
TINY_MULTI = [
    "dataset=synthetic_multi",
    *[o for p in MULTI_PARTS for o in (f"dataset.index.parts.{p}.num_subjects=3", f"dataset.index.parts.{p}.num_clips=12",
                                        f"dataset.index.parts.{p}.frame_size=48")],
    "dataset.index.parts.synth_a.frames_per_clip=[5,6]",
    "dataset.index.parts.synth_c.frames_per_clip=[7,8]",
    *[o for o in TINY_SYNTHETIC if not o.startswith("dataset.")],
]


def tiny_overrides(tmp: Path, name: str, *extra: str) -> list[str]:
    """Overrides for a fast synthetic run writing under ``tmp``."""
    return [
        *TINY_SYNTHETIC,
        f"paths.output_dir={tmp / 'outputs'}",
        f"paths.data_dir={tmp / 'data'}",
        f"experiment_name={name}",
        *extra,
    ]


# A LOSO experiment of AM3F-FlowNet big enough for per-class statistics (60 clips, 6
# folds) and still fast (about 15 s on 2 cores, once per test session).
TINY_AM3F = [
    *TINY_SYNTHETIC,
    "backbone=am3f",
    "dataset.index.num_subjects=6",
    "dataset.index.num_clips=60",
]


def trained_am3f(base: Path) -> Path:
    """The experiment folder of a finished tiny AM3F-FlowNet run under ``base``.

    Trained by ``mefnet-train``'s own code path (:func:`mefnet.experiment.train.run`); a
    second call (from another test module) finds every fold finished and trains nothing.
    """
    from mefnet.config import compose
    from mefnet.experiment.train import run

    cfg = compose([*TINY_AM3F, f"paths.output_dir={base / 'outputs'}",
                   f"paths.data_dir={base / 'data'}", "experiment_name=am3f-tiny"])
    run(cfg)
    return Path(cfg.experiment_dir)
