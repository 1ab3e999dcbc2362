"""The runner: a training config -> its LOSO folds (fitted one by one or batched), the final
model, a recipe search and ``make reproduce-table``, written as an experiment on disk
(:mod:`mefnet.runs`)."""
