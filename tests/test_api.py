"""from mefnet import Experiment: the same run as mefnet-train, predictions as a table."""

from __future__ import annotations

import pytest

from mefnet.report.aggregate import experiment_rows
from mefnet.report.metrics import pooled_metrics
from tests.helpers import tiny_overrides


def test_experiment_runs_like_mefnet_train_and_returns_predictions_and_pooled_metrics(tmp_path):
    from mefnet import Experiment, Result

    exp = Experiment(tiny_overrides(tmp_path, "api-tiny"))
    assert exp.name == "api-tiny" and exp.dir == (tmp_path / "outputs" / "api-tiny" / "seed_42").resolve()
    result = exp.run()
    assert isinstance(result, Result) and result.dir == exp.dir
    frame = result.predictions
    assert len(frame) == 18 and {"subject", "clip", "true", "pred", "prob_negative"} <= set(frame.columns)
    assert frame["subject"].nunique() == 4
    expected = pooled_metrics(frame["true"].tolist(), frame["pred"].tolist(), 3)
    assert result.metrics["uf1"] == pytest.approx(expected["uf1"])
    # The same figures as the table mefnet-train writes.
    (row,) = experiment_rows(exp.dir)
    assert result.per_part()["all"]["uf1"] == row["uf1"] == round(result.metrics["uf1"], 4)
    # A second run trains nothing and reads the same result; open() reads it without a config.
    again = Experiment(tiny_overrides(tmp_path, "api-tiny")).run()
    assert again.predictions.equals(frame)
    assert Experiment.open(exp.dir).metrics == result.metrics
    with pytest.raises(ValueError, match="runs every fold"):
        Experiment(tiny_overrides(tmp_path, "api-one", "fold=sub01")).run()
