"""Small configs shared by tests that train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def user_files(root: Path, files: dict[str, str], entry_points: dict[str, str] | None = None) -> Path:
    """A user's own code and configs, outside mefnet, as the "where to add" tests need them.

    ``files`` maps paths under ``root`` to their text: ``site/<package>/<module>.py`` (each
    package folder gets an empty ``__init__.py``) and ``conf/<group>/<option>.yaml`` (for
    ``--config-dir root/conf``). ``entry_points``: per package, the text of its
    ``entry_points.txt``, written into a ``.dist-info`` beside it as pip would install it.
    Returns ``root/site``, for ``PYTHONPATH``."""
    site = root / "site"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if path.suffix == ".py" and path.parent.parent == site:
            (path.parent / "__init__.py").touch()
    for package, text in (entry_points or {}).items():
        info = site / f"{package}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(text)
    return site


def fold_selections(exp: Path) -> dict[str, dict]:
    """Each finished fold's ``selection`` record (``fold.json``), by ``<dataset>/<subject>``."""
    return {str(p.parent.relative_to(exp / "folds")): json.loads(p.read_text())["selection"]
            for p in sorted(exp.glob("folds/*/*/fold.json"))}


def assert_same_selection(exp_a: Path, exp_b: Path) -> dict[str, tuple[dict, dict]]:
    """Two engines' runs of the same folds chose alike: the same rule per fold and, under
    inner validation, the same chosen epoch and validation subjects and the same
    validation curve within 1e-2 (the 1e-7 differences of vmapped arithmetic grow over
    whole epochs of Adam steps on batches of 1 to 5; 1e-2 still tells a wrong member,
    another fold's weights or a shared EMA, apart). Returns the pairs, by fold."""
    sa, sb = fold_selections(exp_a), fold_selections(exp_b)
    assert sa.keys() == sb.keys() and sa
    for fold in sa:
        assert sa[fold]["rule"] == sb[fold]["rule"], fold
        if sa[fold]["rule"] == "inner_val":
            assert sa[fold]["best_epoch"] == sb[fold]["best_epoch"], fold
            assert sa[fold]["val_subjects"] == sb[fold]["val_subjects"], fold
            for ra, rb in zip(sa[fold]["curve"], sb[fold]["curve"], strict=True):
                assert ra == pytest.approx(rb, abs=1e-2), fold
    return {fold: (sa[fold], sb[fold]) for fold in sa}
