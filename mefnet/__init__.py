"""mefnet: micro-expression recognition with optical flow, AM3F-FlowNet and leak-free LOSO."""

import os as _os

__version__ = "0.1.0"

# OpenCV's internal warnings ("[ WARN:0@...] ... findDecoder") off before cv2 is imported
# anywhere, in this process and the fold workers it starts; mefnet names unreadable images
# itself (mefnet.utils.quiet).
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

__all__ = ["Experiment", "Result", "__version__"]


def __getattr__(name: str):
    # lazy: imported on first use, so `import mefnet` stays free of torch and Hydra.
    if name in ("Experiment", "Result"):
        from mefnet import api

        return getattr(api, name)
    raise AttributeError(f"module 'mefnet' has no attribute {name!r}")
