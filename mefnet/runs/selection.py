"""The selection rules (``selection=``) by name, and which of them choose on inner validation.

A run records its rule (``experiment.json``'s ``selection``, ``fold.json``'s
``selection.rule``); the runner, the training task, the search, the final model, the
report and the benchmarks ask :func:`uses_inner_val` rather than compare names, so a new
rule is named here once. How a rule trains is :mod:`mefnet.training.selection`. This
module sits with the run records (below training and the report) and imports nothing, so
the report reads fold records without loading torch.
"""

from __future__ import annotations

FIXED_EPOCHS = "fixed_epochs"
INNER_VAL = "inner_val"

#: every accepted value of ``selection``
RULES = (FIXED_EPOCHS, INNER_VAL)

# The rules that hold out a seeded group of training subjects, score them during training
# and choose an epoch on them (their fold records carry ``best_epoch`` and ``best``).
_INNER_VAL_RULES = (INNER_VAL,)


def uses_inner_val(rule: object) -> bool:
    """Whether the selection rule ``rule`` (``cfg.selection`` or a fold record's
    ``selection.rule``) chooses on inner-validation subjects (see the module docstring)."""
    return rule in _INNER_VAL_RULES
