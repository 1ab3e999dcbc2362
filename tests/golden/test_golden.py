"""Every golden run writes byte-identical outputs to the recorded ones (tests/golden/README.md)."""

from __future__ import annotations

import json

import pytest

from tests.golden.runs import FIXTURE, RUNS, run_all


@pytest.fixture(scope="module")
def digests(tmp_path_factory) -> dict[str, dict[str, str]]:
    return run_all(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())["runs"]


def test_the_fixture_lists_every_golden_run(recorded):
    assert sorted(recorded) == sorted(RUNS)
    for name, (overrides, _) in RUNS.items():
        engines = [o for o in overrides if o.startswith("engine=")]
        assert engines in (["engine=per_fold"], ["engine=batched"]), f"{name} must name its engine"


@pytest.mark.parametrize("name", list(RUNS))
def test_golden_outputs_are_unchanged(name, digests, recorded):
    want = recorded[name]["files"]
    got = digests[name]
    assert sorted(got) == sorted(want), f"{name}: other files than recorded"
    changed = [f for f in want if got[f] != want[f]]
    assert not changed, f"{name}: outputs differ from the recorded ones: {changed}"
