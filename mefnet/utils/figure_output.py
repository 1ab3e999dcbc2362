"""Figure files of every command: format and resolution.

Every figure command (``mefnet-pictures``, ``mefnet-table``) takes ``--format png|pdf|svg``
and ``--dpi``: :func:`add_figure_arguments` adds them, :func:`figure_output` holds the
choice while the command writes, and :func:`save` writes a figure in it (pdf and svg are
vector files; ``--dpi`` sets a PNG's pixel size and the resolution of images inside a PDF).
Here, below both the report and the inference commands, so each writes figures the same way.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

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
