"""The LightningModule that wraps a backbone and a loss."""

from mefnet.training.module import MERModule

__all__ = ["MERModule"]
