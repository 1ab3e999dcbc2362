"""The selection rules (``selection=``): how a fold chooses the model that predicts its
test subject, and how many epochs the final model trains. One object per rule, found by
name; nothing else in mefnet compares rule names.

A rule is a :class:`SelectionRule`: its ``name``, whether it holds out inner-validation
subjects (``inner_val``: it then needs the ``inner_val`` block, its fold records carry
``best_epoch``, the AU thresholds may be chosen on those subjects, a search may optimise
its scores), its text for ``experiment.json`` (:meth:`~SelectionRule.describe`), how it
fits a group of folds (:meth:`~SelectionRule.select`, given a :class:`FoldRun`: the
pieces :func:`mefnet.experiment.engine.run_folds` offers every rule) and the final
model's epoch count (:meth:`~SelectionRule.final_epochs`).

mefnet's own rules are :data:`BUILT_IN` (``fixed_epochs``, ``inner_val`` with its refit
and keep-best variants). A user's package adds one without any change inside mefnet:

* a Python entry point in the group ``mefnet.selection`` whose name is the rule's name
  (``pyproject.toml``: ``[project.entry-points."mefnet.selection"] last_epoch =
  "mypkg.rules:LastEpoch"``), naming a :class:`SelectionRule` subclass (or instance);
* :func:`register_rule` (a decorator), for a rule defined in a notebook or script that
  runs mefnet through its Python API in the same process.

Only the entry point a run names is imported; listing the known rules (the schema's
refusal of an unknown one) reads entry-point names only.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Protocol

log = logging.getLogger("mefnet")

#: The entry-point group a user's package registers its selection rules in.
SELECTION_GROUP = "mefnet.selection"


class FoldRun(Protocol):
    """What :func:`mefnet.experiment.engine.run_folds` hands a rule: K folds (members)
    fitted together, the building blocks of a selection, and the results a rule leaves.

    A rule's :meth:`SelectionRule.select` must leave ``dms`` (the data modules the test
    subjects are predicted from) and the engine's members holding the weights to predict
    with; it may add to ``selections[k]`` (stored as ``fold.json``'s ``selection``, which
    already holds ``rule``) and set ``thresholds[k]`` (AU thresholds)."""

    jobs: Sequence[tuple[Any, str]]  # (the fold's config, its test subject / fold key)
    max_epochs: int  # the shared trainer.max_epochs
    options: Any  # the shared ``inner_val`` block (None when the config has none)
    members: list  # the engine's fitted members, after a fit (``load_state_dict`` to keep other weights)
    dms: list
    selections: list[dict]
    thresholds: list

    def datamodules(self, val_subjects: Sequence[Sequence[str]] | None = None) -> list:
        """Each fold's data module: the whole training fold, or with ``val_subjects[k]`` held out."""
        ...

    def draw_val_subjects(self) -> list[list[str]]:
        """Each fold's seeded draw of inner-validation subjects (``inner_val.val_fraction``)."""
        ...

    def trackers(self, keep_best: bool) -> list:
        """Each fold's inner-validation tracker (``mefnet.training.selection.InnerValidation``,
        per AU for ``task=au``) configured by ``inner_val``."""
        ...

    def fit(self, dms: Sequence, epochs: Sequence[int], trackers: Sequence | None = None,
            log_name: str | None = None) -> None:
        """Fit a fresh model per fold (validating with ``trackers`` when given;
        ``log_name``: the log folder of a run a later fit replaces, e.g. ``inner``)."""
        ...

    def record_inner(self, k: int, tracker: Any, val_subjects: Sequence[str], **extra: Any) -> None:
        """Store fold ``k``'s inner validation in its ``selection`` (validation subjects,
        ``n_val`` counted in ``dms[k]``, the fit's data modules, then ``extra``, the
        tracker's curve and chosen epoch) and its AU thresholds when
        ``task.threshold=inner_val``."""
        ...


class SelectionRule:
    """One selection rule. Subclass it, set :attr:`name` (and :attr:`inner_val`), and
    write :meth:`describe` and :meth:`select`; :meth:`final_epochs` defaults to
    ``trainer.max_epochs``."""

    name: ClassVar[str] = ""
    #: Whether it holds out a seeded group of training subjects and chooses on them.
    inner_val: ClassVar[bool] = False

    def describe(self, max_epochs: int, options: Any) -> str:
        """The rule in words, stored in ``experiment.json`` and printed under the table
        (``options``: the ``inner_val`` block)."""
        raise NotImplementedError

    def select(self, run: FoldRun) -> None:
        """Fit the folds of ``run`` and leave the weights that predict their test subjects."""
        raise NotImplementedError

    def final_epochs(self, max_epochs: int, records: Callable[[], Mapping[str, dict]],
                     where: str) -> tuple[int, str]:
        """The final model's epoch count (``fold=none``: no subject is left out) and the
        rule that gave it in words; ``records()`` reads the fold records of the
        experiment's folder ``where``."""
        return max_epochs, f"{self.name}: the recipe's {max_epochs} epochs"


class FixedEpochs(SelectionRule):
    """``fixed_epochs``: train ``trainer.max_epochs``, predict the test subject once."""

    name = "fixed_epochs"

    def describe(self, max_epochs: int, options: Any) -> str:
        return (
            f"fixed_epochs: trained {max_epochs} epochs, the test subject predicted once "
            "after training; it is never used for early stopping, checkpoint choice or priors"
        )

    def select(self, run: FoldRun) -> None:
        run.dms = run.datamodules()
        run.fit(run.dms, [run.max_epochs] * len(run.jobs))


class InnerVal(SelectionRule):
    """``inner_val``: hold out a seeded group of training subjects, choose the epoch with
    the best smoothed validation score, then retrain on the whole training fold for that
    many epochs (``inner_val.refit: true``) or keep that epoch's weights (``false``)."""

    name = "inner_val"
    inner_val = True

    def describe(self, max_epochs: int, options: Any) -> str:
        then = ("retrained on the whole training fold for that many epochs" if options.refit
                else "the weights of that epoch kept")
        return (
            f"inner_val: {round(100 * float(options.val_fraction))}% of the training subjects (seeded draw per fold) "
            f"held out; the epoch (1..{max_epochs}) with the best validation {options.metric} "
            f"(smoothed over {options.smooth}) chosen, {then}; the test subject predicted once at the end and "
            "never used for epoch choice, checkpoint choice or priors"
        )

    def select(self, run: FoldRun) -> None:
        refit = bool(run.options.refit)
        val_subjects = run.draw_val_subjects()
        run.dms = run.datamodules(val_subjects)
        trackers = run.trackers(keep_best=not refit)
        run.fit(run.dms, [run.max_epochs] * len(run.jobs), trackers, "inner" if refit else None)
        for k, tracker in enumerate(trackers):
            run.record_inner(k, tracker, val_subjects[k], refit=refit)
        if refit:
            run.dms = run.datamodules()
            run.fit(run.dms, [t.best_epoch for t in trackers])
        else:
            for k, tracker in enumerate(trackers):
                run.members[k].load_state_dict(tracker.best_state())

    def final_epochs(self, max_epochs: int, records: Callable[[], Mapping[str, dict]],
                     where: str) -> tuple[int, str]:
        chosen = sorted(int(r["selection"]["best_epoch"]) for r in records().values()
                        if r.get("status") == "complete" and "best_epoch" in (r.get("selection") or {}))
        if not chosen:
            raise ValueError(
                f"fold=none with selection={self.name} takes its epoch count from the LOSO folds of {where}, "
                "and none has finished: run the LOSO first (the same command without fold=none), or use "
                "selection=fixed_epochs")
        n = max(1, math.floor(statistics.median(chosen)))
        return n, (f"{self.name}: the median of the epochs chosen by {len(chosen)} finished LOSO folds "
                   f"(range {chosen[0]}..{chosen[-1]}), rounded down")


#: mefnet's own rules, in the order the schema lists them.
BUILT_IN: tuple[SelectionRule, ...] = (FixedEpochs(), InnerVal())

_registered: dict[str, SelectionRule] = {}
_loaded: dict[str, SelectionRule] = {}


def _as_rule(obj: Any, where: str) -> SelectionRule:
    rule = obj() if isinstance(obj, type) and issubclass(obj, SelectionRule) else obj
    if not isinstance(rule, SelectionRule) or not rule.name:
        raise TypeError(f"{where}: {obj!r} is not a SelectionRule subclass (or instance) with a name")
    return rule


def register_rule(rule: Any) -> Any:
    """Decorator: make the :class:`SelectionRule` subclass (or instance) ``rule`` a
    ``selection=`` choice in this process. Returns ``rule`` unchanged."""
    obj = _as_rule(rule, "register_rule")
    if obj.name in {r.name for r in BUILT_IN}:
        raise ValueError(f"register_rule: {obj.name!r} is a built-in selection rule")
    _registered[obj.name] = obj
    return rule


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=SELECTION_GROUP))


def rule_names() -> tuple[str, ...]:
    """Every known rule's name: mefnet's, then those registered in this process and by
    entry points (sorted), without importing any user package."""
    own = [r.name for r in BUILT_IN]
    users = sorted({*_registered, *(ep.name for ep in _entry_points())} - set(own))
    return (*own, *users)


def find_rule(name: object) -> SelectionRule | None:
    """The rule called ``name``, or None (an unknown name, or a user's entry point that
    could not be loaded, which is logged)."""
    if not isinstance(name, str):
        return None
    for rule in BUILT_IN:
        if rule.name == name:
            return rule
    if name in _registered:
        return _registered[name]
    if name in _loaded:
        return _loaded[name]
    for ep in _entry_points():
        if ep.name != name:
            continue
        try:
            rule = _as_rule(ep.load(), f"entry point {ep.name} = {ep.value} (group {SELECTION_GROUP})")
        except Exception as e:  # a user's broken package must not break mefnet: say so, skip it
            log.warning("entry point %s = %s (group %s) could not be loaded: %s", ep.name, ep.value,
                        SELECTION_GROUP, e)
            continue
        if rule.name != name:
            log.warning("entry point %s (group %s) names the rule %r; its name must be the entry point's; ignored",
                        ep.name, SELECTION_GROUP, rule.name)
            continue
        _loaded[name] = rule
        return rule
    return None


def rule_of(name: object) -> SelectionRule:
    """The rule called ``name``; a ValueError listing the known rules when there is none
    (a run's config was refused earlier by the schema, with the same list)."""
    rule = find_rule(name)
    if rule is None:
        raise ValueError(f"selection: {name!r} is not one of {', '.join(rule_names())} "
                         f"(a user's rule is registered in the entry-point group {SELECTION_GROUP})")
    return rule
