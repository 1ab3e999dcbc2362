"""The confusion-matrix images of the tables (matplotlib, Agg backend: no display needed),
written in the format and resolution of :mod:`mefnet.utils.figure_output`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mefnet.utils.figure_output import DPI, save

# Fixed figure size, so every image of a table has the same pixel size.
FIGSIZE = (10.0, 4.6)


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    title: str,
    counts_label: str = "counts",
) -> Path:
    """Write counts (left) and row-normalised rates (right) side by side (PNG unless
    :func:`figure_output` chose another format; the suffix of ``path`` follows it).

    Rows are true classes, columns predicted classes; the diagonal of the right panel is
    each class's recall. A PNG is ``FIGSIZE * dpi`` pixels (1000 x 460 at 100 dpi).
    """
    # A bare Figure renders PNG through Agg whatever pyplot's backend is, and leaves
    # pyplot's global state (and a user's notebook backend) alone.
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=float)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {k} class names")
    support = cm.sum(axis=1, keepdims=True)
    rates = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    panels = [
        (cm, counts_label, lambda v: f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}", None),
        # Rates on a fixed 0..1 scale: colours compare across experiments.
        (rates, "row-normalised (diagonal = recall)", lambda v: f"{v:.2f}", 1.0),
    ]
    for ax, (mat, label, fmt, top) in zip(axes, panels, strict=True):
        vmax = top or (mat.max() if mat.max() > 0 else 1.0)
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=vmax)
        ax.set_title(label, fontsize=10)
        ax.set_xticks(range(k), labels=class_names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels=class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, fmt(mat[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if mat[i, j] > 0.6 * vmax else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=11)
    # No software/date metadata: the same predictions give a byte-identical image.
    return save(fig, path)
