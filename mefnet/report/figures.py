"""Figure files of every command (format and resolution) and the confusion-matrix images
(matplotlib, Agg backend: no display needed).

Every figure command (``mefnet-pictures``, ``mefnet-table``) takes ``--format png|pdf|svg``
and ``--dpi``: :func:`add_figure_arguments` adds them, :func:`figure_output` holds the
choice while the command writes, and :func:`save` writes a figure in it (pdf and svg are
vector files; ``--dpi`` sets a PNG's pixel size and the resolution of images inside a PDF).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Fixed figure size, so every image of a table has the same pixel size.
FIGSIZE = (10.0, 4.6)
DPI = 100
FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class FigureOutput:
    """How figures are written: ``format`` (png | pdf | svg) and ``dpi``."""

    format: str = "png"
    dpi: int = DPI

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got '{self.format}'")
        if not 10 <= int(self.dpi) <= 2400:
            raise ValueError(f"--dpi: expected a resolution from 10 to 2400, got {self.dpi}")

    def path(self, path: str | Path) -> Path:
        """``path`` with this format's suffix."""
        return Path(path).with_suffix(f".{self.format}")


_OUTPUT: ContextVar[FigureOutput | None] = ContextVar("mefnet_figure_output", default=None)


def current_output() -> FigureOutput:
    """The figure format and resolution in force (png at 100 dpi unless a command chose)."""
    return _OUTPUT.get() or FigureOutput()


@contextlib.contextmanager
def figure_output(fmt: str = "png", dpi: int = DPI) -> Iterator[FigureOutput]:
    """Write the figures of the block as ``fmt`` at ``dpi``."""
    token = _OUTPUT.set(FigureOutput(str(fmt), int(dpi)))
    try:
        yield current_output()
    finally:
        _OUTPUT.reset(token)


def add_figure_arguments(ap: argparse.ArgumentParser) -> None:
    """``--format`` and ``--dpi``, the same for every figure command."""
    ap.add_argument("--format", choices=FORMATS, default="png",
                    help="figure file format: png (default), or pdf / svg (vector, for publications)")
    ap.add_argument("--dpi", type=int, default=DPI,
                    help=f"figure resolution in dots per inch (default {DPI}; journals often ask 300 or more)")


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` in the current format and resolution (suffix replaced);
    without software or date metadata, so the same data give the same file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = current_output()
    target = out.path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fig.canvas is None or not hasattr(fig.canvas, "print_figure"):
        FigureCanvasAgg(fig)
    metadata = {"Creator": None, "Producer": None, "CreationDate": None} if out.format == "pdf" else \
        {"Date": None, "Creator": None} if out.format == "svg" else {"Software": None}
    fig.savefig(target, format=out.format, dpi=out.dpi, metadata=metadata)
    return target


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
