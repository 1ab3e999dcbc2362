"""A selection rule from the user's own package and config folder (not mefnet's): one rule
module, registered by a Python entry point in the group ``mefnet.selection``, and one
config file; no edit of a shared list inside mefnet. It trains one epoch through
``mefnet-train``, then the final model asks it for its epoch count, and an unknown rule is
refused with a list that includes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import user_files
from tests.test_first_hour import mefnet

# "The last evaluated epoch": inner validation as inner_val runs it, but the weights the
# fit ends with predict the test subject; fold.json's best_epoch says which epoch that was.
RULE = '''
from mefnet.selection_rules import SelectionRule


class LastEvaluated(SelectionRule):
    name = "last_evaluated"
    inner_val = True

    def describe(self, max_epochs, options):
        return (f"last_evaluated: {round(100 * float(options.val_fraction))}% of the training subjects held out "
                f"and scored; the weights after epoch {max_epochs} kept")

    def select(self, run):
        val_subjects = run.draw_val_subjects()
        run.dms = run.datamodules(val_subjects)
        trackers = run.trackers(keep_best=False)
        run.fit(run.dms, [run.max_epochs] * len(run.jobs), trackers)
        for k, tracker in enumerate(trackers):
            run.record_inner(k, tracker, val_subjects[k])
            run.selections[k]["best_epoch"] = tracker.curve[-1]["epoch"]

    def final_epochs(self, max_epochs, records, where):
        last = sorted({int(r["selection"]["best_epoch"]) for r in records().values()})
        return last[-1], f"last_evaluated: the last evaluated epoch of the folds ({last})"
'''

ENTRY_POINTS = """[mefnet.selection]
last_evaluated = myrules.rules:LastEvaluated
"""

# Its config: an experiment file in the user's --config-dir choosing the rule and its options.
EXPERIMENT_YAML = """# @package _global_
selection: last_evaluated
inner_val:
  val_fraction: 0.34
  every_n_epochs: 1
  min_epochs: 1
  smooth: 1
"""

TINY = ["dataset.index.num_subjects=4", "dataset.index.num_clips=16", "dataset.index.frame_size=48",
        "dataset.index.frames_per_clip=[5,6]", "preprocessing.n_jobs=1", "trainer.max_epochs=1", "logger=none"]


def user_package(root: Path) -> Path:
    """``root/site``: the package ``myrules`` and its ``.dist-info`` with the entry point,
    as pip would install it; ``root/conf``: its config for ``--config-dir``."""
    return user_files(root, {"site/myrules/rules.py": RULE, "conf/experiment/last_evaluated.yaml": EXPERIMENT_YAML},
                      {"myrules": ENTRY_POINTS})


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    base = tmp_path_factory.mktemp("user_selection")
    return base, {"PYTHONPATH": str(user_package(base))}


def test_a_user_selection_rule_trains_one_epoch_and_gives_the_final_model_its_epochs(user):
    base, env = user
    def args(name: str) -> list[str]:
        return ["--config-dir", str(base / "conf"), "experiment=last_evaluated", f"experiment_name={name}", *TINY]

    run = mefnet("mefnet-train", *args("toy-rule"), cwd=base, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "engine=auto: batched" in run.stdout + run.stderr  # the rule is the engines' business, not theirs
    exp = base / "outputs" / "toy-rule" / "seed_42"
    assert json.loads((exp / "experiment.json").read_text())["selection"].startswith(
        "last_evaluated: 34% of the training subjects held out and scored")
    folds = [json.loads(p.read_text()) for p in sorted(exp.glob("folds/*/*/fold.json"))]
    assert len(folds) == 4 and (exp / "table.csv").is_file()
    for record in folds:
        sel = record["selection"]
        assert sel["rule"] == "last_evaluated" and sel["best_epoch"] == record["epochs"] == 1
        assert len(sel["val_subjects"]) == 1 and sel["n_val"] > 0 and len(sel["curve"]) == 1
        assert record["fold"] not in sel["val_subjects"]  # drawn among the training subjects
    per_fold = mefnet("mefnet-train", *args("toy-rule-pf"), "engine=per_fold", cwd=base, env=env)
    assert per_fold.returncode == 0, per_fold.stderr[-3000:]
    assert [json.loads(p.read_text())["selection"]["val_subjects"]
            for p in sorted((base / "outputs" / "toy-rule-pf" / "seed_42").glob("folds/*/*/fold.json"))] == \
        [record["selection"]["val_subjects"] for record in folds]  # the same seeded draws under either engine
    final = mefnet("mefnet-train", *args("toy-rule"), "fold=none", cwd=base, env=env)
    assert final.returncode == 0, final.stderr[-3000:]
    record = json.loads((exp / "final" / "final.json").read_text())
    assert record["epochs"] == 1 and record["epoch_rule"] == "last_evaluated: the last evaluated epoch of the folds ([1])"


def test_an_unknown_rule_is_refused_listing_the_users_rules_too(user):
    base, env = user
    run = mefnet("mefnet-train", "selection=nope", *TINY, cwd=base, env=env)
    assert run.returncode != 0
    assert "selection: 'nope' is not one of fixed_epochs, inner_val, last_evaluated" in run.stderr
    assert "Traceback" not in run.stderr
    # Without the user's package, its rule is unknown, and the list says what is.
    run = mefnet("mefnet-train", "selection=last_evaluated", *TINY, cwd=base)
    assert run.returncode != 0
    assert "selection: 'last_evaluated' is not one of fixed_epochs, inner_val" in run.stderr
    assert "inner_val, last_evaluated" not in run.stderr
