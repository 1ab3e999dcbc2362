"""Using and inspecting trained models: the model file, prediction, export and pictures.

- :mod:`mefnet.inference.checkpoint`: ``model.pt``, the trained backbone with its
  config and class names, loaded safely (``torch.load(weights_only=True)``).
- :mod:`mefnet.inference.inputs`: clips from an onset/apex image pair, a frame folder or
  a video, and batch lists.
- :mod:`mefnet.inference.predict`: ``mefnet-predict``.
- :mod:`mefnet.inference.export`: ``mefnet-export`` (TorchScript, ONNX).
- :mod:`mefnet.inference.explain` and :mod:`mefnet.inference.pictures`: attention,
  stream weights, Grad-CAM and ``mefnet-pictures``.
"""
