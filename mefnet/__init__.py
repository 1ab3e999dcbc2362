"""mefnet: micro-expression recognition with optical flow, AM3F-FlowNet and leak-free LOSO."""

__version__ = "0.1.0"

__all__ = ["Experiment", "Result", "__version__"]


def __getattr__(name: str):
    # Imported on first use, so `import mefnet` stays light (no torch, no Hydra).
    if name in ("Experiment", "Result"):
        from mefnet import api

        return getattr(api, name)
    raise AttributeError(f"module 'mefnet' has no attribute {name!r}")
