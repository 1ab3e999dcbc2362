"""The default synthetic experiment is learnable, and its label-permuted control is not.

Slow (a few minutes): run by `make test-slow` and CI, not by the default `make test`.
"""

from __future__ import annotations

import pytest

from mefnet.config import compose
from mefnet.experiment.train import run


@pytest.mark.slow
def test_ststnet_learns_the_synthetic_default_and_the_shuffled_control_stays_near_chance(tmp_path):
    common = [f"paths.output_dir={tmp_path / 'out'}", f"paths.data_dir={tmp_path / 'data'}",
              "n_jobs=2", "logger=none", "save_checkpoint=false"]
    real = run(compose(["experiment=synthetic_ststnet", *common]))[0]
    control = run(compose(["experiment=synthetic_ststnet_shuffled", *common]))[0]
    assert real["clips"] == 200 and real["folds"] == 16
    assert real["uf1"] >= 0.6, real
    assert control["uf1"] <= 0.45, control
