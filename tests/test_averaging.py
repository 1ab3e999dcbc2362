"""Weight averaging (callbacks=ema): the final model holds the warmed-up EMA of the
weights seen after every optimizer step."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mefnet.training.averaging import WarmupEMA, warmup_ema
from mefnet.training.module import MERModule


class _Record(L.Callback):
    def __init__(self):
        self.states = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def _fit(callbacks, epochs=3):
    L.seed_everything(0, verbose=False)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    module = MERModule(backbone, nn.CrossEntropyLoss(), lambda params: torch.optim.Adam(params, lr=0.05), 3)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(40, 3, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g))
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)))
    return module


def test_final_weights_are_the_warmed_up_ema_of_every_step():
    record = _Record()
    module = _fit([WarmupEMA(decay=0.9), record])
    expected = None
    for n, state in enumerate(record.states):
        if expected is None:
            expected = {k: v.clone() for k, v in state.items()}
            continue
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in state.items():
            expected[k] = expected[k] * d + v * (1 - d) if v.is_floating_point() else v
    final = module.state_dict()
    assert len(record.states) == 9  # 3 epochs of 3 batches
    for k, v in expected.items():
        assert torch.allclose(final[k], v, atol=1e-6), k
    # and the average is not just the last weights
    last = record.states[-1]
    assert any(not torch.allclose(final[k], last[k]) for k in last if last[k].is_floating_point())


def test_decay_warms_up_and_is_checked():
    f = warmup_ema(0.99)
    a, c = torch.zeros(1), torch.ones(1)
    assert float(f(a, c, torch.tensor(1))) == pytest.approx(1 - 2 / 11)
    assert float(f(a, c, torch.tensor(10_000))) == pytest.approx(0.01)
    assert int(f(torch.tensor(3), torch.tensor(7), torch.tensor(5))) == 7  # integer buffers follow the model
    with pytest.raises(ValueError, match="decay"):
        warmup_ema(1.0)


def test_ema_group_builds_from_config():
    from hydra.utils import instantiate

    from mefnet.config import compose

    cfg = compose(["callbacks=ema"])
    cb = instantiate(cfg.callbacks.ema)
    assert isinstance(cb, WarmupEMA) and cb.decay == 0.99


def test_in_place_update_of_many_averages_equals_averaged_model_bit_for_bit():
    """The batched engine's one multi-tensor update for all members with the same number
    of updates must be exactly what AveragedModel.update_parameters does with avg_fn."""
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(0)
    ema = WarmupEMA(decay=0.9)
    members = [nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)) for _ in range(3)]
    loop = [AveragedModel(m, use_buffers=True, avg_fn=warmup_ema(0.9)) for m in members]
    fast = [AveragedModel(m, use_buffers=True, avg_fn=warmup_ema(0.9)) for m in members]
    for step in range(30):
        with torch.no_grad():
            for m in members:
                for t in m.parameters():
                    t.add_(torch.randn_like(t))
                m[1].running_mean.add_(torch.randn(3))
                m[1].num_batches_tracked += 1
        for avg, m in zip(loop, members, strict=True):
            avg.update_parameters(m)
        if step == 0:
            for avg, m in zip(fast, members, strict=True):
                avg.update_parameters(m)  # the first update copies (as the engine does)
            continue
        n = int(fast[0].n_averaged)
        ema.average_in_place(
            [t.detach() for avg in fast for t in [*avg.module.parameters(), *avg.module.buffers()]],
            [t.detach() for m in members for t in [*m.parameters(), *m.buffers()]], n)
        for avg in fast:
            avg.n_averaged += 1
    for a, b in zip(loop, fast, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    assert int(fast[0].module[1].num_batches_tracked) == 30
    with pytest.raises(ValueError, match="first update"):
        ema.average_in_place([], [], 0)


def test_the_member_axis_path_on_one_module_is_lightnings_own_bit_for_bit(tmp_path):
    """Both engines average through MemberAveraging; on a fold of its own (one member) it
    gives the weights Lightning's WeightAveraging gives, and the same checkpoint."""
    from mefnet.training.averaging import MemberAveraging

    def fit_and_save(callback, name):
        L.seed_everything(0, verbose=False)
        backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        module = MERModule(backbone, nn.CrossEntropyLoss(), lambda params: torch.optim.Adam(params, lr=0.05), 3)
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.rand(40, 3, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g))
        trainer = L.Trainer(max_epochs=3, callbacks=[callback], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            accumulate_grad_batches=2)
        trainer.fit(module, DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0)))
        trainer.save_checkpoint(tmp_path / name)
        return module, torch.load(tmp_path / name, weights_only=False)

    own, own_ckpt = fit_and_save(WarmupEMA(decay=0.9), "lightning.ckpt")
    one, one_ckpt = fit_and_save(MemberAveraging(WarmupEMA(decay=0.9)), "members.ckpt")
    a, b = own.state_dict(), one.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert own_ckpt["callbacks"] == one_ckpt["callbacks"] and list(one_ckpt["callbacks"]) == ["WarmupEMA"]
    for key in ("state_dict", "current_model_state", "averaging_state"):
        assert own_ckpt[key].keys() == one_ckpt[key].keys(), key
        assert all(torch.equal(own_ckpt[key][k], one_ckpt[key][k]) for k in own_ckpt[key]), key
