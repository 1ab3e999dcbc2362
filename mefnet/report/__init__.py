"""Reports: pooled metrics and results tables rebuilt from stored fold predictions."""

from mefnet.report.metrics import confusion_matrix, pooled_metrics

__all__ = ["confusion_matrix", "pooled_metrics"]
