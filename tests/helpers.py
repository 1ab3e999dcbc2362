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


def tiny_overrides(tmp: Path, name: str, *extra: str) -> list[str]:
    """Overrides for a fast synthetic run writing under ``tmp``."""
    return [
        *TINY_SYNTHETIC,
        f"paths.output_dir={tmp / 'outputs'}",
        f"paths.data_dir={tmp / 'data'}",
        f"experiment_name={name}",
        *extra,
    ]
