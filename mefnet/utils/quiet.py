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
  ``hydra.help``).

:func:`quiet` is idempotent and cheap; the commands and every fold worker call it.
"""

from __future__ import annotations

import logging
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
