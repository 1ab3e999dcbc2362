"""mefnet: micro-expression recognition with optical flow, AM3F-FlowNet and leak-free LOSO."""

__version__ = "0.1.0"
