"""Dataset adapters: each reads a dataset in the layout it ships in and returns one
normalized clip index (:mod:`~mefnet.datasets.clip_index`); with them the class protocols,
the action units, the annotation sheets and the synthetic dataset."""
