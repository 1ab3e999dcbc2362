"""Tiny synthetic flow folders (labels.csv + 28x28 PNGs) for tests that train on flows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLASSES = ("negative", "positive", "surprise")


def make_flow_folder(root: Path, datasets: dict[str, int] | None = None, clips_per_subject: int = 6,
                     seed: int = 0, size: int = 28, relabel: dict[str, int] | None = None,
                     aus: dict[int, str] | None = None) -> Path:
    """A flow folder of ``datasets`` (name -> number of subjects), ``clips_per_subject``
    clips each, classes cycling 0, 1, 2. Each map is a class-dependent blob plus noise,
    min-max scaled to exactly 0..255 per channel like the published images (R = u, G = v,
    B = strain). ``relabel`` maps ``dataset/subject`` to a label shift (mod 3) applied to
    that subject's labels in labels.csv only: the maps stay the same. ``aus`` (class ->
    AU cell) adds an ``aus`` column, the same AUs for every clip of a class.
    """
    datasets = datasets or {"smic": 2, "casme2": 2}
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    centres = [(0.3, 0.3), (0.7, 0.7), (0.3, 0.7)]
    lines = ["dataset,subject,clip,label" + (",aus" if aus else "")]
    for dataset, n_subjects in datasets.items():
        for s in range(1, n_subjects + 1):
            subject = f"s{s:02d}" if dataset == "smic" else f"sub{s:02d}"
            shift = (relabel or {}).get(f"{dataset}/{subject}", 0)
            for k in range(clips_per_subject):
                label = k % 3
                cy, cx = centres[label]
                blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
                maps = [blob * (1 + c) + 0.8 * rng.standard_normal((size, size)) for c in range(3)]
                img = np.stack([_to_u8(m) for m in maps[::-1]], axis=-1)  # B G R = strain v u
                clip = f"{subject}_{k:02d}"
                path = root / dataset / subject / f"{clip}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), img)
                lines.append(f"{dataset},{subject},{clip},{(label + shift) % 3}" + (f",{aus[label]}" if aus else ""))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _to_u8(m: np.ndarray) -> np.ndarray:
    return np.round(255 * (m - m.min()) / (m.max() - m.min())).astype(np.uint8)
