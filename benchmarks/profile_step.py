"""Where one training step of the batched engine goes, per PyTorch operator.

Run: ``python benchmarks/profile_step.py [--backbone am3f] [--recipe experiment=megc2019_flows]
[--members 34] [--batch 32] [--steps 20] [--profiled-steps 3] [--loop | --one-model]
[--bf16] [--top 25] [overrides ...]``.

``profile_fold.py`` sorts whole folds into rows by Python function; once a step is a
vmapped forward and backward pass, that says only "forward" and "backward". This script
runs the engine's own step on its own: ``--members`` copies of the recipe's network
(``--recipe``, ``experiment=megc2019_flows`` by default; each member initialised from its
own seed), their parameters stacked and the forward pass vmapped through the
engine's functional copy (:class:`mefnet.training.batched._Template`; one dropout mask
per member and dropout call, drawn by the engine's own function), one cross-entropy loss
per member summed, one
backward pass (the optimizer step is left out). ``--loop`` runs the members one after
another instead (``vectorize=false``). ``--one-model`` runs a single network on all the
members' clips at once (one batch of ``members x batch`` clips): the same arithmetic with
no member axis at all, what a step would cost if the K members were one model, the floor
of any way of batching them that keeps PyTorch's CPU kernels (up to the kernels' own
choice of algorithm per shape). ``--bf16`` runs the forward pass under CPU autocast to
bfloat16 (what ``trainer.precision=bf16-mixed`` would do), to see whether the CPU's
bfloat16 instructions pay on these shapes. Random maps of the recipe's shape (3 x 28 x 28) stand in
for clips; the arithmetic does not depend on their values. One thread, as each worker
process of a LOSO run has.

Prints the CPU milliseconds of a step (``time.process_time``, ``--steps`` steps after 3
warm-up steps), then ``torch.profiler``'s self CPU time of ``--profiled-steps`` more steps
grouped into rows (convolutions forward and backward, batch norm, pooling, elementwise
arithmetic, reductions, memory copies and layout changes, random draws, the rest) and
its ``--top`` operators by input shape. Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from bench_loso import COMPOSITE, RECIPE, load_average
from torch.profiler import ProfilerActivity, profile

from mefnet.config import compose, instantiate_option
from mefnet.training.batched import _draw_mask, _Template

# operator name (without "aten::") -> row: the first row with a matching prefix
ROWS = [
    ("convolution backward", ("convolution_backward", "_slow_conv2d_backward")),
    ("convolution forward", ("mkldnn_convolution", "_convolution", "convolution", "conv2d", "_slow_conv2d")),
    ("batch norm (forward and backward)", ("native_batch_norm", "batch_norm", "_batch_norm")),
    ("pooling (forward and backward)", ("max_pool", "avg_pool", "_adaptive_avg_pool", "adaptive_avg_pool",
                                        "adaptive_max_pool")),
    ("memory copies and layout (copy_, clone, contiguous, stack, cat)", ("copy_", "clone", "contiguous",
                                                                        "_to_copy", "stack", "cat", "fill_",
                                                                        "zero_", "scatter")),
    ("random draws (dropout masks)", ("bernoulli",)),
    ("matrix products (linear layers)", ("bmm", "mm", "addmm", "linear", "matmul")),
    ("reductions (sum, mean, amax, max)", ("sum", "mean", "amax", "max", "eq")),
    ("elementwise (mul, add, div, activations and their gradients)", ("mul", "add", "div", "sub", "relu",
                                                                       "threshold", "sigmoid", "clamp",
                                                                       "softmax", "_softmax", "neg",
                                                                       "where")),
]


def row_of(name: str) -> str:
    op = name.split("::", 1)[-1]
    for row, prefixes in ROWS:
        if op.startswith(prefixes):
            return row
    return "rest (views, allocation, autograd bookkeeping, loss)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="am3f")
    ap.add_argument("--recipe", default=" ".join(RECIPE), help="overrides that set the recipe "
                    "(e.g. 'experiment=ststnet_paper')")
    ap.add_argument("--members", type=int, default=34, help="members trained together (a worker of a "
                    "68-fold LOSO with n_jobs=2 holds 34)")
    ap.add_argument("--batch", type=int, default=None, help="clips per member and step (default: the "
                    "recipe's data.batch_size)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--profiled-steps", type=int, default=3, help="steps under torch.profiler (its "
                    "overhead grows with the number of events it holds)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--loop", action="store_true", help="members one after another (vectorize=false)")
    how.add_argument("--one-model", action="store_true", help="one network, one batch of members x batch "
                     "clips (the floor of batching)")
    ap.add_argument("--bf16", action="store_true", help="forward pass under torch.autocast('cpu', "
                    "dtype=torch.bfloat16)")
    ap.add_argument("--top", type=int, default=25, help="operators listed by input shape")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides")
    a = ap.parse_args()
    torch.set_num_threads(1)
    common = [*COMPOSITE, *a.recipe.split(), f"backbone={a.backbone}"]
    cfg = compose([*common, *a.overrides])
    if a.backbone != "am3f" and "msff_residual" in cfg.backbone:  # the recipe's AM3F-FlowNet key
        cfg = compose([*common, "~backbone.msff_residual", *a.overrides])
    batch = a.batch or int(cfg.data.batch_size)
    members = []
    for k in range(a.members):
        torch.manual_seed(k)
        members.append(instantiate_option(cfg.backbone, num_classes=3).train())
    template = _Template(members[0])
    # each member's tensors in the template's order, looked up once (as the engine does)
    own = [(dict(m.named_parameters()), dict(m.named_buffers())) for m in members]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(a.members, batch, 3, 28, 28, generator=gen)
    y = torch.randint(0, 3, (a.members, batch), generator=gen)

    def forward() -> torch.Tensor:
        if a.one_model:
            return F.cross_entropy(members[0](x.flatten(0, 1)), y.flatten())
        if a.loop:
            return sum(F.cross_entropy(m(x[k]), y[k]) for k, m in enumerate(members))
        params = {n: torch.stack([p[n] for p, _ in own]) for n in template.params}
        buffers = {n: torch.stack([b[n] for _, b in own]) for n in template.buffers}
        shapes = template.dropout_shapes(members[0], x[0])
        masks = [torch.stack([_draw_mask(s, p, x.device) for _ in members]) for s, p in shapes]
        logits = template(params, buffers, x, masks)
        return sum(F.cross_entropy(logits[k], y[k]) for k in range(a.members))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            total = forward()
        total.backward()
        for m in members:
            m.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    cpu = time.process_time()
    for _ in range(a.steps):
        step()
    ms = (time.process_time() - cpu) / a.steps * 1e3
    engine = "looped" if a.loop else "as one model" if a.one_model else "vmapped"
    engine += ", bfloat16 autocast" if a.bf16 else ""
    print(f"{a.backbone}, {a.members} members {engine}, batch {batch}: {ms:.1f} CPU ms a step "
          f"(forward + backward, {a.steps} steps, one thread); load average {load_average()}\n")
    n = a.profiled_steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    rows: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        rows[row_of(ev.key)] += ev.self_cpu_time_total
    total = sum(rows.values())
    print("| row | CPU ms a step | share |\n|---|---:|---:|")
    for name, us in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {us / 1e3 / n:.1f} | {100 * us / total:.0f}% |")
    print(f"\n(self CPU time under the profiler, {n} steps: {total / 1e3 / n:.1f} ms a step, the profiler's own "
          "cost included)\n")
    if a.top <= 0:
        return
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(n):
            step()
    print("| operator | input shapes | calls a step | CPU ms a step |\n|---|---|---:|---:|")
    by_shape = prof.key_averages(group_by_input_shape=True)
    for ev in sorted(by_shape, key=lambda e: -e.self_cpu_time_total)[:a.top]:
        shapes = ", ".join(str(list(s)) for s in ev.input_shapes[:3] if s) or "(not recorded: a list of tensors)"
        print(f"| {ev.key} | {shapes} | {ev.count / n:g} | {ev.self_cpu_time_total / 1e3 / n:.2f} |")


if __name__ == "__main__":
    main()
