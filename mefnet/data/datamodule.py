"""The LightningDataModule every dataset goes through.

A dataset is a clip index (from any adapter) plus preprocessing settings. Each
``conf/dataset/*.yaml`` instantiates this module (``_target_``), with the dataset's
clip index inside (``index``, built on first use) and its name and face-crop default;
the runner completes it with the preprocessing, the fold and the loader settings
(:func:`mefnet.experiment.fitting.datamodule`); on its own::

    dm = MERDataModule(index, Preprocessing.from_config({"size": 28}), cache_dir, fold="sub01")
    trainer.fit(model, datamodule=dm)
    trainer.predict(model, datamodule=dm)

The module computes every clip's input maps once into the flow cache
(``prepare_data``), keeps them as one in-memory tensor (small datasets fit easily: 442
clips at 3x28x28 are 4 MB) and splits them by subject for the fold being run: the test
subject's clips go to the predict loader only and are never seen during training. The
LOSO runner builds the index and the maps once per run and hands them to the module of
every fold (``index=``, ``features=``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from mefnet.datasets.clip_index import ClipIndex
from mefnet.preprocessing.features import Preprocessing, build_features
from mefnet.schema import TRAIN_ORDERS, choice  # the schema owns the list

#: ``data.order``: how the training clips are ordered (matters with ``shuffle=False``).


class MERDataModule(L.LightningDataModule):
    """Leave-one-subject-out folds over a clip index.

    Args:
        index: the clip index; or a zero-argument callable, or a Hydra config with a
            ``_target_`` (``dataset.index``), that builds it when the module first needs
            it (so the dataset's files are only read when the module is used).
        preprocessing: how input maps are made (also their cache key): a
            :class:`~mefnet.preprocessing.features.Preprocessing`, or the ``preprocessing``
            config node.
        cache_dir: where the flow cache lives.
        fold: the test subject (``dataset/subject`` or an unambiguous ``subject``).
        features: precomputed maps for ``index`` (the LOSO runner computes them once
            and shares them between folds); computed from the cache when None.
        batch_size: training batch size.
        shuffle_train_labels: permute the training labels (seeded). A sanity control:
            a model trained this way must score near chance.
        seed: seed for the label permutation and the loader's shuffling.
        n_jobs: processes used to fill the flow cache.
        val_subjects: training subjects held out as an inner validation set (model
            selection without the test subject); their clips leave the training set.
        split: (train, test) clip indices of the fold when the protocol is not
            leave-one-subject-out (:mod:`mefnet.runs.splits`); None: leave out
            subject ``fold``.
        targets: per-clip training targets replacing the class labels (the AU task's
            multi-hot rows, :mod:`mefnet.tasks.au`); None: class labels.
        shuffle: reshuffle the training clips every epoch (seeded); False keeps one
            fixed order, the same every epoch.
        order: the training clips' order: ``index`` (the clip index's order) or
            ``class`` (grouped by class, 0 first, index order inside a class: class
            folders read one after the other, as STSTNet's published script does).
        name: the dataset's name (``dataset.name``: experiment names, tables).
        face: the dataset's face-crop default (``dataset.face``, which
            ``preprocessing.face`` reads; the ``preprocessing`` given decides).
        datasets: the parts of a composite dataset (``dataset.datasets``, which its
            index's loader combines); None for a single dataset.

    The fold's clip indices (:attr:`train_idx`, :attr:`val_idx`, :attr:`test_idx`) are
    known from the index alone, before :meth:`setup`; the loaders' datasets are made by
    :meth:`setup`, which Lightning calls in ``trainer.fit`` / ``trainer.predict``.
    """

    def __init__(
        self,
        index: ClipIndex | Callable[[], ClipIndex] | Mapping,
        preprocessing: Preprocessing | Mapping,
        cache_dir: str | Path,
        fold: str,
        features: torch.Tensor | None = None,
        batch_size: int = 256,
        shuffle_train_labels: bool = False,
        seed: int = 0,
        n_jobs: int = 1,
        val_subjects: list[str] | None = None,
        split: tuple[list[int], list[int]] | None = None,
        targets: torch.Tensor | None = None,
        shuffle: bool = True,
        order: str = "index",
        name: str | None = None,
        face: Any = None,
        datasets: list[str] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(index, Mapping):
            index = _builder(index)
        self._index_source = index
        self._index: ClipIndex | None = index if isinstance(index, ClipIndex) else None
        if not isinstance(preprocessing, Preprocessing):
            preprocessing = Preprocessing.from_config(preprocessing)
        self.name = None if name is None else str(name)
        self.face = face
        self.datasets = None if datasets is None else [str(d) for d in datasets]
        self.preprocessing = preprocessing
        self.cache_dir = str(cache_dir)
        self.fold = fold
        self.features = features
        self.batch_size = batch_size
        self.shuffle_train_labels = shuffle_train_labels
        self.seed = seed
        self.n_jobs = n_jobs
        self.val_subjects = list(val_subjects or [])
        self.split = split
        self.targets = targets
        choice("data.order", order, TRAIN_ORDERS)
        self.shuffle = bool(shuffle)
        self.order = order
        self._fold_indices: tuple[list[int], list[int], list[int]] | None = None

    @property
    def index(self) -> ClipIndex:
        if self._index is None:
            self._index = self._index_source()
        return self._index

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.index.class_names)

    @property
    def test_subject(self) -> str:
        return self.index.resolve_subject(self.fold)

    def prepare_data(self) -> None:
        """Fill the flow cache (idempotent; only missing entries are computed)."""
        if self.features is None:
            build_features(self.index, self.preprocessing, self.cache_dir, n_jobs=self.n_jobs)

    def _split(self) -> tuple[list[int], list[int], list[int]]:
        """(train, val, test) clip indices of the fold, computed once from the index."""
        if self._fold_indices is None:
            if self.split is not None:
                train_idx, test_idx = (list(part) for part in self.split)
            else:
                train_idx, test_idx = self.index.fold_indices(self.fold)
            val_idx: list[int] = []
            if self.val_subjects:
                val = {self.index.resolve_subject(s) for s in self.val_subjects}
                tested = {self.index[i].subject_key for i in test_idx} & val
                if tested:
                    raise ValueError(f"the test subject(s) {sorted(tested)} cannot be validation subjects")
                val_idx = [i for i in train_idx if self.index[i].subject_key in val]
                train_idx = [i for i in train_idx if self.index[i].subject_key not in val]
            if self.order == "class":
                train_idx = sorted(train_idx, key=lambda i: (self.index[i].label, i))
            self._fold_indices = (train_idx, val_idx, test_idx)
        return self._fold_indices

    @property
    def train_idx(self) -> list[int]:
        """The training clips of the fold (index positions, in training order)."""
        return self._split()[0]

    @property
    def val_idx(self) -> list[int]:
        """The inner-validation clips (training subjects held out; empty without ``val_subjects``)."""
        return self._split()[1]

    @property
    def test_idx(self) -> list[int]:
        """The test clips of the fold, in the order they are predicted."""
        return self._split()[2]

    def setup(self, stage: str | None = None) -> None:
        """Make the loaders' datasets (Lightning calls it in ``fit`` and ``predict``; it
        gives the same datasets every time)."""
        if self.features is None:
            self.features = build_features(self.index, self.preprocessing, self.cache_dir, n_jobs=self.n_jobs)
        if len(self.features) != len(self.index):
            raise ValueError(f"{len(self.features)} feature maps for {len(self.index)} clips")
        train_idx, val_idx, test_idx = self._split()
        labels = (self.targets if self.targets is not None
                  else torch.tensor([c.label for c in self.index], dtype=torch.long))
        if len(labels) != len(self.index):
            raise ValueError(f"{len(labels)} targets for {len(self.index)} clips")
        train_y = labels[train_idx]
        if self.shuffle_train_labels:
            rng = np.random.default_rng(self.seed)
            train_y = train_y[torch.from_numpy(rng.permutation(len(train_y)))]
        self.train_set = TensorDataset(self.features[train_idx], train_y)
        self.val_set = TensorDataset(self.features[val_idx], labels[val_idx])
        # The test subject's labels stay out of every loader: prediction needs none.
        self.test_set = TensorDataset(self.features[test_idx])

    def train_class_counts(self) -> list[int]:
        """Clips per class in the training fold (what prior-aware losses may use)."""
        return self.index.class_counts(self.train_idx)

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=self.shuffle, generator=gen)

    def val_dataloader(self) -> DataLoader:
        """The inner-validation clips (training subjects held out from training), in one
        batch. Never the test subject: with no validation subjects it is empty, and the
        trainer runs no validation at all (``limit_val_batches: 0``)."""
        return DataLoader(self.val_set, batch_size=max(len(self.val_set), 1), shuffle=False,
                          generator=_unused_generator())

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=max(self.batch_size, 1), shuffle=False,
                          generator=_unused_generator())


def _builder(config: Mapping) -> Callable[[], ClipIndex]:
    """The clip index's Hydra config as a zero-argument builder (read on first use)."""
    if "_target_" not in config:
        raise ValueError("dataset.index: the clip index config has no _target_ (the adapter that "
                         "loads the dataset, e.g. mefnet.datasets.casme2.load_casme2)")

    def build() -> ClipIndex:
        from hydra.utils import instantiate

        return instantiate(config)

    return build


def _unused_generator() -> torch.Generator:
    """For loaders that do not shuffle: a DataLoader without a generator draws its base
    seed from the global RNG each epoch, which would shift the dropout and augmentation
    draws of training depending on when and how often validation runs."""
    return torch.Generator().manual_seed(0)
