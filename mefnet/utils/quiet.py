"""One place for the third-party noise mefnet's commands silence.

Silenced, because mefnet says the same in one line of its own (or it is harmless):

* OpenCV's internal ``[ WARN:0@3.227] ... imread_(...) / findDecoder`` lines: mefnet checks
  every image it reads and names the file in its own error;
* Lightning's "Experiment logs directory ... exists and is not empty" on resume: an
  unfinished fold is rerun from the start, and its old logs are replaced on purpose;
* loky's "A worker stopped while some jobs were given to the executor" (an idle worker
  timing out between folds; the jobs still run);
* the Hydra joblib launcher's ``Joblib.Parallel(n_jobs=..., ...) is launching N jobs`` repr
  line: mefnet's sweeper logs how many fold jobs run and how many at a time;
* Hydra's "<app> is powered by Hydra" banner in ``--help`` (``conf/train.yaml``,
  ``hydra.help``);
* under ``debug=overfit``, Lightning's "You requested to overfit but enabled train dataloader
  shuffling" (the config asks for that one batch, unshuffled) and "Total length of
  `DataLoader` across ranks is zero" (the loaders overfit_batches leaves empty).

mefnet's own warnings (a skipped clip, flow maps of mixed sizes, ...) become one clean log
line of the ``mefnet`` logger instead of Python's ``file:line: Warning`` form; of the skipped
clips, the summary with every clip is logged, not each clip again.

:func:`quiet` is idempotent and cheap; the commands and every fold worker call it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings

# Before cv2 is imported anywhere (set by ``import mefnet``): fold workers inherit it.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def quiet() -> None:
    """Silence the third-party lines listed in the module doc."""
    if "cv2" in sys.modules:  # imported before OPENCV_LOG_LEVEL was set
        try:
            cv2 = sys.modules["cv2"]
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            pass
    warnings.filterwarnings("ignore", ".*logs directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", ".*A worker stopped while some jobs were given to the executor.*")
    logging.getLogger("hydra_plugins.hydra_joblib_launcher").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*requested to overfit but enabled train dataloader shuffling.*")
    warnings.filterwarnings("ignore", ".*Total length of `DataLoader` across ranks is zero.*")
    if not getattr(warnings.showwarning, "_mefnet", False):
        warnings.showwarning = _warning_as_log_line(warnings.showwarning)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _warning_as_log_line(show):
    """``warnings.showwarning`` that logs a warning raised in mefnet's code as one line."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        ours = category.__module__.startswith("mefnet.") or os.path.abspath(str(filename)).startswith(
            _PACKAGE_DIR + os.sep)  # a warning's stacklevel may point at the caller of mefnet's code
        if not ours:
            return show(message, category, filename, lineno, file, line)
        text = str(message)
        if category.__name__ == "BadClipWarning" and ": skipping " in text.split("\n")[0]:
            return None  # one skipped clip: the summary that follows lists every one
        logging.getLogger("mefnet").warning("%s", text)
        return None

    showwarning._mefnet = True
    return showwarning


def ensure_logging() -> None:
    """INFO lines of ``mefnet`` on stderr in a process where nobody configured logging (a
    fold worker of joblib/loky, a Python session), in the commands' format."""
    root = logging.getLogger()
    mef = logging.getLogger("mefnet")
    if root.handlers or mef.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    mef.addHandler(handler)
    mef.setLevel(logging.INFO)


def plural(n: int, word: str) -> str:
    """``1 test clip``, ``3 test clips``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    """``seconds`` as people read it: ``42 s``, ``3 min 05 s``, ``1 h 02 min`` (``?`` for NaN)."""
    if math.isnan(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"
