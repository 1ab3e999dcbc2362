"""A LightningModule of the user's own package (not mefnet's), chosen with ``model=<name>``
from a ``--config-dir``: mefnet-train builds it for every fold with its own options and
trains it (engine=auto: batched, since it overrides only the training loss), with no
change inside mefnet; an option it does not take is refused in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import user_files
from tests.test_first_hour import mefnet

MODULES = '''
import os

import torch.nn.functional as F

from mefnet.training.module import MERModule


def _trace(line):
    with open(os.environ["MYMODULES_TRACE"], "a") as f:
        f.write(line + "\\n")


class SmoothedMER(MERModule):
    """MERModule trained with label smoothing."""

    def __init__(self, *args, smoothing: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.smoothing = smoothing
        self._stepped = False
        _trace(f"built {type(self.backbone).__name__} smoothing={smoothing} classes={self.hparams.num_classes}")

    def loss_of(self, logits, y):
        if not self._stepped:
            self._stepped = True
            _trace("stepped")
        return F.cross_entropy(logits, y, label_smoothing=self.smoothing)
'''

# What docs/recipes.md shows.
MODEL_YAML = """# Label smoothing in the training loss (mymodules.modules.SmoothedMER)
_target_: mymodules.modules.SmoothedMER
smoothing: 0.2  # the share of each target spread over the other classes
"""

TINY = ["dataset.index.num_subjects=3", "dataset.index.num_clips=12", "dataset.index.frame_size=48",
        "dataset.index.frames_per_clip=[5,6]", "preprocessing.n_jobs=1", "trainer.max_epochs=1", "logger=none"]


def user_package(root: Path) -> tuple[Path, Path]:
    """``root/site/mymodules`` (on PYTHONPATH) and ``root/conf/model/smoothed.yaml``."""
    return user_files(root, {"site/mymodules/modules.py": MODULES, "conf/model/smoothed.yaml": MODEL_YAML}), \
        root / "conf"


def test_a_user_lightning_module_trains_through_mefnet_train(tmp_path):
    site, conf = user_package(tmp_path)
    trace = tmp_path / "trace.txt"
    env = {"PYTHONPATH": str(site), "MYMODULES_TRACE": str(trace)}
    run = mefnet("mefnet-train", "--config-dir", str(conf), "model=smoothed", *TINY, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    exp = tmp_path / "outputs" / "synthetic-ststnet-cross_entropy" / "seed_42"
    record = json.loads((exp / "experiment.json").read_text())
    assert record["config"]["model"] == {"_target_": "mymodules.modules.SmoothedMER", "smoothing": 0.2}
    assert "engine=auto: batched" in run.stdout + run.stderr
    # One module per fold, built with the config's option and the task's head, each trained
    # through its own loss.
    lines = trace.read_text().splitlines()
    assert sorted(lines) == sorted(["built STSTNet smoothing=0.2 classes=3"] * 3 + ["stepped"] * 3)
    folds = sorted(exp.glob("folds/*/*/fold.json"))
    assert len(folds) == 3 and all((f.parent / "predictions.csv").is_file() for f in folds)


def test_an_option_the_user_module_does_not_take_is_refused_in_one_line(tmp_path):
    site, conf = user_package(tmp_path)
    (conf / "model" / "typo.yaml").write_text("_target_: mymodules.modules.SmoothedMER\nsmothing: 0.2\n")
    run = mefnet("mefnet-train", "--config-dir", str(conf), "model=typo", *TINY, cwd=tmp_path,
                 env={"PYTHONPATH": str(site), "MYMODULES_TRACE": str(tmp_path / "trace.txt")})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "model.smothing: SmoothedMER takes no such option; its options are smoothing" in run.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "trace.txt").exists()
