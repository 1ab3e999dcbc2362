"""A dataset with its own class mapping, from the user's own package and config folder (not
mefnet's): one adapter module and one config file, no edit of a shared list inside mefnet
(``mefnet/datasets/protocols.py`` is for the built-in datasets), and it trains one epoch
through ``mefnet-train``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.helpers import user_files
from tests.test_first_hour import mefnet

# The adapter: it reads its clips (here: mefnet's synthetic generator as the raw data, so
# the test needs no licensed data) and maps the raw emotions onto its own two classes.
ADAPTER = '''
from dataclasses import replace

from mefnet.datasets.clip_index import ClipIndex
from mefnet.datasets.synthetic import load_synthetic

CLASSES = ("relaxed", "tense")
MAPPING = {"positive": "relaxed", "negative": "tense", "surprise": "tense"}


def load_toy(data_dir, **generator):
    raw = load_synthetic(data_dir=data_dir, name="toy", **generator)
    clips = [replace(c, label=CLASSES.index(MAPPING[c.label_name]), label_name=MAPPING[c.label_name])
             for c in raw]
    return ClipIndex(clips, list(CLASSES), name="toy")
'''

DATASET_YAML = """_target_: mefnet.data.datamodule.MERDataModule
_recursive_: false
name: toy
face: none
index:
  _target_: mytoy.data.load_toy
  data_dir: ${paths.data_dir}
  num_subjects: 3
  num_clips: 12
  frame_size: 48
  frames_per_clip: [5, 6]
"""


def test_a_user_dataset_with_its_own_class_mapping_trains_one_epoch(tmp_path):
    site = user_files(tmp_path, {"site/mytoy/data.py": ADAPTER, "conf/dataset/toy.yaml": DATASET_YAML})
    run = mefnet("mefnet-train", "--config-dir", str(tmp_path / "conf"), "dataset=toy", "trainer.max_epochs=1",
                 "preprocessing.n_jobs=1", "logger=none", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr[-3000:]
    exp = tmp_path / "outputs" / "toy-ststnet-cross_entropy" / "seed_42"  # named after the dataset
    record = json.loads((exp / "experiment.json").read_text())
    assert record["dataset"] == "toy" and record["class_names"] == ["relaxed", "tense"]
    assert record["num_clips"] == 12 and len(record["folds"]) == 3
    predictions = sorted(exp.glob("folds/*/*/predictions.csv"))
    assert len(predictions) == 3
    with predictions[0].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["true_name"] for r in rows} <= {"relaxed", "tense"}, rows[0]
    assert (exp / "table.csv").is_file()
    assert not (Path(__file__).parents[1] / "conf" / "dataset" / "toy.yaml").exists()
