"""Lightning data modules: folds of in-memory input maps."""

from mefnet.data.datamodule import MERDataModule

__all__ = ["MERDataModule"]
