"""The shuffled-label control of task=au: each training clip's AU row is moved whole to
another training clip (seeded); inner-validation and test clips keep theirs or have none."""

from __future__ import annotations

import torch

from mefnet.config import compose
from mefnet.data.datamodule import MERDataModule
from mefnet.datasets.flow_folder import load_flow_folder
from tests.flow_trees import make_flow_folder


def _module(tmp_path, index, targets, features, shuffle: bool, seed: int = 3) -> MERDataModule:
    dm = MERDataModule(index, compose([]).preprocessing, tmp_path / "cache", "casme2/sub01", features=features,
                       targets=targets, shuffle_train_labels=shuffle, seed=seed, val_subjects=["casme2/sub02"])
    dm.setup()
    return dm


def test_shuffled_au_rows_are_permuted_within_the_training_subjects_only(tmp_path):
    root = make_flow_folder(tmp_path / "flows", {"casme2": 4}, clips_per_subject=4, aus={0: "4", 1: "12", 2: "1+2"})
    index = load_flow_folder(root, action_units=True)
    n = len(index)
    # One distinct multi-hot row per clip (its number in binary over 12 AUs), so a moved row
    # is recognisable, and features that name their clip.
    targets = torch.tensor([[(i >> k) & 1 for k in range(12)] for i in range(1, n + 1)], dtype=torch.float32)
    features = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    plain = _module(tmp_path, index, targets, features, shuffle=False)
    dm = _module(tmp_path, index, targets, features, shuffle=True)
    train, val, test = dm.train_idx, dm.val_idx, dm.test_idx
    assert train and val and test and train == plain.train_idx
    x, y = dm.train_set.tensors
    # The maps stay in place; the AU rows move, whole, among the training clips only.
    assert torch.equal(x, features[train]) and torch.equal(plain.train_set.tensors[1], targets[train])
    assert not torch.equal(y, targets[train])
    rows = sorted(tuple(r) for r in y.int().tolist())
    assert rows == sorted(tuple(r) for r in targets[train].int().tolist())
    assert not {tuple(r) for r in y.int().tolist()} & {tuple(r) for r in targets[val + test].int().tolist()}
    # Inner validation keeps its true rows; the test subject's rows are in no loader.
    assert torch.equal(dm.val_set.tensors[1], targets[val]) and len(dm.test_set.tensors) == 1
    # Seeded: the same seed gives the same permutation, another seed another one.
    assert torch.equal(_module(tmp_path, index, targets, features, shuffle=True).train_set.tensors[1], y)
    assert not torch.equal(_module(tmp_path, index, targets, features, shuffle=True, seed=4).train_set.tensors[1], y)
