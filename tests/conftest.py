"""Shared fixtures. Real third-party data lives beside the checkout in ../shared/realdata
(never inside the repository); tests that need it skip with a reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("MEFNET_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))
# CI sets MEFNET_REQUIRE_REALDATA=1 (.ci/run): there a test whose real data is missing
# fails instead of skipping, so that a moved folder cannot silently turn tests off.
REQUIRE_REALDATA = os.environ.get("MEFNET_REQUIRE_REALDATA", "") not in ("", "0")


def missing_realdata(reason: str):
    """Skip (or, under MEFNET_REQUIRE_REALDATA=1, fail) a test whose real data is absent."""
    if REQUIRE_REALDATA:
        pytest.fail(f"{reason} (MEFNET_REQUIRE_REALDATA is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path of ../shared/realdata; skips the test where it is not there."""
    if not REALDATA.is_dir():
        missing_realdata(f"real third-party data not found at {REALDATA} (set MEFNET_REALDATA)")
    return REALDATA


@pytest.fixture(scope="session")
def annotations(realdata: Path) -> Path:
    path = realdata / "annotations"
    if not path.is_dir():
        missing_realdata(f"{path} is absent")
    return path


# -- test tiers --------------------------------------------------------------------------------
# The modules whose tests train a model (a Lightning fit, a run, a pretraining): marked
# `train`. Every other test is marked `unit`: it trains nothing, and the unit tier
# (`make test-unit`: unit tests that are neither slow, nor read the real third-party data,
# nor start a console command in a new Python process (`command`), under a minute) runs
# them alone. A unit test that starts a Lightning
# fit fails (`_unit_tests_train_nothing`), so the tier stays what it says.
TRAINING_MODULES = frozenset({
    "test_api", "test_api_notebook", "test_au_flows", "test_averaging", "test_batched", "test_batched_tasks", "test_benchmarks",
    "test_cli", "test_config_groups", "test_datasets_frames_csv", "test_docs_commands", "test_emotion_au",
    "test_ensemble",
    "test_experiment_folders",
    "test_export", "test_face", "test_figure_formats", "test_final_model", "test_first_hour", "test_flow_cache",
    "test_golden", "test_integrity", "test_notebooks", "test_paper_reports", "test_partial_runs", "test_pictures",
    "test_predict", "test_progress_bar", "test_pretrain", "test_progress_quiet", "test_protocols_tasks",
    "test_readme_examples", "test_reproduce", "test_reproduce_flows", "test_reproduce_slow", "test_search",
    "test_ststnet_paper", "test_sweep", "test_table", "test_train", "test_user_backbone", "test_user_dataset",
    "test_user_module", "test_user_selection",
})


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        item.add_marker(pytest.mark.train if module in TRAINING_MODULES else pytest.mark.unit)
        if "realdata" in getattr(item, "fixturenames", ()):  # reads ../shared/realdata: not in the unit tier
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(autouse=True)
def _unit_tests_train_nothing(request, monkeypatch):
    if request.node.get_closest_marker("unit") is None:
        return
    import lightning

    def refused(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} trains a model (Lightning fit) but is in the unit tier; add its module "
                    "to TRAINING_MODULES in tests/conftest.py")

    monkeypatch.setattr(lightning.Trainer, "fit", refused)
