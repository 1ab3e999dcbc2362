"""What a run learns (``task`` config group): emotion classes or action units.

``task=emotion`` (default): the dataset's class protocol, softmax and the ``loss`` group.
``task=au``: multi-label action units (:mod:`mefnet.tasks.au`).
``task=emotion_au``: both, one backbone and two heads (:mod:`mefnet.tasks.emotion_au`).

:func:`load_index` is the one place where the configured dataset becomes the clip index
a run uses (the LOSO runner and the sweeper both call it), so the AU task's clip choice
is the same everywhere. The task's training parts (its module, loss and inner validation
for one fold) are :mod:`mefnet.training.task_runner`.
"""

from __future__ import annotations

from hydra.utils import instantiate

from mefnet.datasets.clip_index import ClipIndex
from mefnet.tasks.au import AUTask, is_au, prepare_index
from mefnet.tasks.emotion_au import check_index, is_emotion_au


def load_index(cfg) -> ClipIndex:
    """The configured dataset's clip index, as the configured task uses it."""
    index: ClipIndex = instantiate(cfg.dataset.index)
    if is_au(cfg):
        index = prepare_index(index, AUTask.from_config(cfg.task))
    elif is_emotion_au(cfg):
        index = check_index(index)
    return index
