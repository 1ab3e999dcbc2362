"""task=emotion_au (emotion and action units together): the masked AU loss, the AU head on
the backbones' penultimate features, emotion scored exactly as task=emotion, and a LOSO run
end to end on a flow folder where some clips carry no AU annotation."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from mefnet.config import ConfigError, absolute_paths, compose
from mefnet.datasets.action_units import DEFAULT_AU_SET, NOT_ANNOTATED
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError
from mefnet.experiment.batched import unsupported
from mefnet.experiment.train import run
from mefnet.models import AM3FFlowNet, OFFApexNet, SmallResNet, STSTNet
from mefnet.report.table import write_table
from mefnet.runs.store import AU_PREDICTIONS, PREDICTIONS
from mefnet.schema import validate
from mefnet.tasks.emotion_au import EmotionAULoss, au_positive_weights, packed_targets
from mefnet.training.multitask import EmotionAUModule
from tests.flow_trees import make_flow_folder

AU_SET = (4, 12)
CLASSES = ["negative", "positive", "surprise"]
SYNTH_AUS = {0: "4+15", 1: "6+12", 2: "1+2"}
TRAIN = ["trainer.max_epochs=1", "preprocessing.n_jobs=1", "logger=none", "save_checkpoint=false"]


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _clip(dataset: str, subject: str, clip: str, label: int, aus: str) -> Clip:
    return Clip(dataset=dataset, subject=subject, clip=clip, label=label, label_name=CLASSES[label], onset=0, apex=1,
                offset=2, aus=aus)


def _index(clips: list[Clip]) -> ClipIndex:
    return ClipIndex(clips, class_names=CLASSES, name="t")


def _module(backbone: nn.Module, au_weight: float = 1.0) -> EmotionAUModule:
    loss = EmotionAULoss(nn.CrossEntropyLoss(), au_weight)
    return EmotionAUModule(backbone, loss, torch.optim.Adam, 3, num_aus=len(AU_SET))


def _packed(label: int, annotated: bool, aus: list[int]) -> list[float]:
    return [float(label), float(annotated), *map(float, aus)]


# -- targets and the masked loss -------------------------------------------------------------------


def test_packed_targets_mask_unannotated_clips_and_keep_annotated_clips_without_an_au_of_the_set():
    index = _index([
        _clip("casme2", "sub01", "a", 0, "4+12"),
        _clip("casme2", "sub01", "b", 1, ""),              # coded, no AU at all: a negative row
        _clip("casme2", "sub02", "c", 2, "25"),            # coded, no AU of the set: a negative row
        _clip("casme2", "sub02", "d", 1, NOT_ANNOTATED),   # ? in an annotated dataset: masked
        _clip("smic", "s01", "e", 2, ""),                  # a dataset without AU codes: masked
    ])
    y = packed_targets(index, AU_SET)
    assert y.tolist() == [_packed(0, True, [1, 1]), _packed(1, True, [0, 0]), _packed(2, True, [0, 0]),
                          _packed(1, False, [0, 0]), _packed(2, False, [0, 0])]
    # negatives / positives over the three annotated rows only
    assert au_positive_weights(y).tolist() == [2.0, 2.0]


def test_an_index_without_any_au_annotation_is_refused_naming_the_task():
    index = _index([_clip("smic", "s01", "a", 0, ""), _clip("smic", "s02", "b", 1, "")])
    with pytest.raises(DatasetError, match=r"task=emotion_au: no action-unit annotation.*mefnet-aus attach"):
        packed_targets(index, AU_SET)


def test_a_clip_without_au_annotation_contributes_no_au_loss_and_no_au_gradient():
    torch.manual_seed(0)
    emotion_logits = torch.randn(3, 3, requires_grad=True)
    au_logits = torch.randn(3, 2, requires_grad=True)
    y = torch.tensor([_packed(0, True, [1, 0]), _packed(1, False, [0, 0]), _packed(2, True, [0, 1])])
    loss_fn = EmotionAULoss(nn.CrossEntropyLoss(), au_weight=0.7)
    emotion, au = loss_fn.parts(emotion_logits, au_logits, y)
    kept = [0, 2]
    expected_au = nn.functional.binary_cross_entropy_with_logits(au_logits[kept], y[kept, 2:])
    assert torch.allclose(au, expected_au)  # the mean over the annotated clips only
    assert torch.allclose(emotion, nn.functional.cross_entropy(emotion_logits, y[:, 0].long()))  # every clip
    loss_fn(emotion_logits, au_logits, y).backward()
    assert torch.equal(au_logits.grad[1], torch.zeros(2))  # the masked clip: exactly no AU gradient
    assert au_logits.grad[0].abs().sum() > 0 and au_logits.grad[2].abs().sum() > 0
    assert emotion_logits.grad[1].abs().sum() > 0  # it still trains the emotion head
    # Even a non-finite AU logit of a masked clip reaches neither the loss nor the gradient.
    bad = au_logits.detach().clone()
    bad[1] = float("nan")
    bad.requires_grad_(True)
    loss = loss_fn(emotion_logits.detach(), bad, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(bad.grad).all()


@pytest.mark.filterwarnings("ignore:.*self.log.*")
def test_a_batch_of_unannotated_clips_gives_the_au_head_no_gradient():
    torch.manual_seed(0)
    module = _module(STSTNet(num_classes=3))
    y = torch.tensor([_packed(0, False, [0, 0]), _packed(1, False, [0, 0])])
    loss, _ = module.train_loss((torch.rand(2, 3, 28, 28), y))
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in module.au_head.parameters())
    assert module.backbone.fc.weight.grad.abs().sum() > 0
    module.zero_grad()
    y[0, 1] = 1.0  # one annotated clip: the AU head learns
    loss, _ = module.train_loss((torch.rand(2, 3, 28, 28), y))
    loss.backward()
    assert module.au_head.weight.grad.abs().sum() > 0


# -- the AU head on the backbones' penultimate features ------------------------------------------


@pytest.mark.parametrize(("backbone", "features"), [
    (STSTNet, 16 * 5 * 5), (AM3FFlowNet, None), (OFFApexNet, 1024), (SmallResNet, 64)])
def test_the_au_head_reads_the_input_of_the_backbones_classifier(backbone, features):
    torch.manual_seed(0)
    net = backbone(num_classes=3)
    module = _module(net).eval()
    classifier = net.get_submodule(module.logits_layer)
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 3
    if features is not None:
        assert module.au_head.in_features == features
    x = torch.rand(4, 3, 28, 28)
    with torch.no_grad():
        emotion, au = module.forward_both(x)
        assert torch.equal(emotion, module(x)) and au.shape == (4, len(AU_SET))
        both = module.predict_step((x,), 0)
    assert torch.equal(both[:, :3], module.probabilities(x))  # emotion first, exactly as task=emotion
    assert torch.allclose(both[:, 3:], torch.sigmoid(au))


class _NoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 28)

    def forward(self, x):
        return self.conv(x).flatten(1)


class _ScaledLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 28 * 28, 3)

    def forward(self, x):
        return 2 * self.fc(x.flatten(1))


def test_a_backbone_that_cannot_give_penultimate_features_is_refused_with_a_reason():
    with pytest.raises(ValueError, match=r"task=emotion_au: backbone _NoLinear has no nn.Linear layer with 3 "
                                         r"outputs"):
        _module(_NoLinear())
    module = _module(_ScaledLogits())
    with pytest.raises(ValueError, match=r"_ScaledLogits's output is not the output of its layer 'fc'"):
        module.forward_both(torch.rand(1, 3, 28, 28))


# -- config --------------------------------------------------------------------------------------


def test_task_emotion_au_composes_checks_au_weight_and_runs_with_the_batched_engine():
    cfg = compose(["task=emotion_au"])
    assert cfg.task.au_weight == 1.0 and list(cfg.task.au_set) == list(DEFAULT_AU_SET)
    assert cfg.experiment_name.endswith("-cross_entropy+au")  # not the emotion-only run's folder
    assert compose(["task=emotion_au", "dataset=flow_folder"]).dataset.index.action_units is True
    validate(cfg)
    with pytest.raises(ConfigError, match=r"task.au_weight: -1.0 is out of range; it must be >= 0"):
        validate(compose(["task=emotion_au", "task.au_weight=-1"]))
    assert unsupported(cfg) is None  # per_fold == batched: tests/test_batched_tasks.py


# -- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """SMIC (no AU codes) and CASME II (AUs per class; one clip `?`), 2 subjects each."""
    root = make_flow_folder(tmp_path_factory.mktemp("mtl") / "flows", {"smic": 2, "casme2": 2},
                            clips_per_subject=6, aus=SYNTH_AUS)
    rows = _rows(root / "labels.csv")
    for r in rows:
        if r["dataset"] == "smic":
            r["aus"] = ""
    rows[-1]["aus"] = NOT_ANNOTATED
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _overrides(root: Path, tmp: Path, name: str, *extra: str) -> list[str]:
    return ["dataset=flow_folder", f"dataset.index.root={root}", *TRAIN, f"paths.output_dir={tmp / 'outputs'}",
            f"paths.data_dir={tmp / 'data'}", f"experiment_name={name}", *extra]


def _run(overrides: list[str]) -> Path:
    cfg = compose(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(cfg)
    return Path(absolute_paths(cfg).experiment_dir)


def test_a_loso_run_trains_every_clip_writes_emotion_predictions_and_au_predictions_of_annotated_clips(
        mixed_folder, tmp_path):
    exp = _run(_overrides(mixed_folder, tmp_path, "mtl", "task=emotion_au", "task.au_set=[4,12]"))
    record = json.loads((exp / "experiment.json").read_text())
    assert record["task"] == "emotion_au" and record["au_set"] == [4, 12] and record["num_clips"] == 24
    folds = ["smic/s01", "smic/s02", "casme2/sub01", "casme2/sub02"]
    assert sorted(record["folds"]) == sorted(folds)
    for fold in folds:
        d = exp / "folds" / fold
        preds = _rows(d / PREDICTIONS)
        assert len(preds) == 6 and list(preds[0])[:7] == ["dataset", "subject", "clip", "true", "true_name",
                                                           "pred", "pred_name"]
        fold_record = json.loads((d / "fold.json").read_text())
        assert fold_record["n_train"] == 18
        aus = _rows(d / AU_PREDICTIONS)
        # SMIC has no AU codes and the last CASME II clip is `?`: no AU row for them.
        expected = {"smic/s01": 0, "smic/s02": 0, "casme2/sub01": 6, "casme2/sub02": 5}[fold]
        assert len(aus) == expected
        for r in aus:
            assert r["true"] == {"0": "4", "1": "12", "2": ""}[next(p["true"] for p in preds if p["clip"] == r["clip"])]
            assert 0.0 <= float(r["prob_AU4"]) <= 1.0 and r["thr_AU4"] == "0.50"
    # benchmarks/au_real.py scores the AU head on the clips task=au scores: an AU of the set.
    done = subprocess.run([sys.executable, "benchmarks/au_real.py", str(exp)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert "mtl: test folds, 1 seed(s) (42), 8 clips, 2 folds with AU rows" in done.stdout
    assert "| mtl | 42 | 2 | – | – |" in done.stdout  # the epoch was chosen on emotion scores
    assert "| AU4 | 4 |" in done.stdout and "| AU12 | 4 |" in done.stdout


def test_with_au_weight_zero_the_emotion_predictions_and_table_are_those_of_task_emotion(mixed_folder, tmp_path):
    """The emotion path is task=emotion's: no AU loss gives the same bits, and mefnet-table
    reads an emotion_au experiment like an emotion one."""
    extra = ["backbone=am3f", "test_time_mirror=true", "engine=per_fold"]
    emotion = _run(_overrides(mixed_folder, tmp_path, "emo", *extra))
    both = _run(_overrides(mixed_folder, tmp_path, "emo-au0", "task=emotion_au", "task.au_weight=0", *extra))
    for fold in ["smic/s01", "casme2/sub02"]:
        assert (emotion / "folds" / fold / PREDICTIONS).read_bytes() == (both / "folds" / fold / PREDICTIONS).read_bytes()
    assert (both / "folds" / "casme2" / "sub02" / AU_PREDICTIONS).is_file()
    a = write_table([emotion], tmp_path / "ta")
    b = write_table([both], tmp_path / "tb")
    strip = [{k: v for k, v in r.items() if k != "experiment"} for r in a]
    assert strip == [{k: v for k, v in r.items() if k != "experiment"} for r in b]
    assert [r["part"] for r in b] == ["all", "smic", "casme2"]
    # And with the AU loss on, the AU head changes the backbone: other emotion probabilities.
    weighted = _run(_overrides(mixed_folder, tmp_path, "emo-au1", "task=emotion_au", *extra))
    assert (weighted / "folds" / "smic" / "s01" / PREDICTIONS).read_bytes() != (
        emotion / "folds" / "smic" / "s01" / PREDICTIONS).read_bytes()
