"""CPU cost of every registered backbone: size, inference latency, training throughput.

Run: ``python benchmarks/bench_models.py [--threads N] [--repeats R]``. Prints a table;
asserts nothing. Times are medians over ``--repeats`` runs after warm-up.

Columns:
- ``params@28`` / ``params@128``: parameter count for 3 classes at that input size.
- ``fwd b1/b64 @28/@128``: eval-mode forward latency under ``torch.no_grad``.
- ``train b64@28``: samples/s of forward + backward + Adam step, batch 64, 28x28.
- ``step b160@28``: one forward + backward + Adam step on a batch of 160 at 28x28, about
  one epoch of one LOSO fold on a 164-clip dataset; ``LOSO 16x100ep`` multiplies it by
  16 folds and 100 epochs (training only, no data loading or evaluation).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mefnet.models import MODEL_FILE_BACKBONES

MODELS = {cls.model_name: cls for cls in MODEL_FILE_BACKBONES}

NUM_CLASSES = 3


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(name: str, size: int) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[name](num_classes=NUM_CLASSES, in_channels=3, input_size=size)


def forward_ms(name: str, size: int, batch: int, repeats: int) -> float:
    model = build(name, size).eval()
    x = torch.randn(batch, 3, size, size)

    def run() -> None:
        with torch.no_grad():
            model(x)

    return 1000 * median_seconds(run, repeats)


def train_step_seconds(name: str, size: int, batch: int, repeats: int) -> float:
    model = build(name, size).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, NUM_CLASSES, (batch,))

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return median_seconds(run, repeats)


def parameters(name: str, size: int) -> int:
    return sum(p.numel() for p in build(name, size).parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")

    header = (
        f"{'model':<11}{'params@28':>10}{'params@128':>11}"
        f"{'fwd b1@28':>10}{'b64@28':>8}{'b1@128':>8}{'b64@128':>9}"
        f"{'train b64@28':>13}{'step b160@28':>13}{'LOSO 16x100ep':>14}"
    )
    print(header)
    print(
        f"{'':<11}{'':>10}{'':>11}{'ms':>10}{'ms':>8}{'ms':>8}{'ms':>9}"
        f"{'samples/s':>13}{'ms':>13}{'s':>14}"
    )
    for name in sorted(MODELS):
        latencies = [
            forward_ms(name, size, batch, args.repeats)
            for size, batch in ((28, 1), (28, 64), (128, 1), (128, 64))
        ]
        throughput = 64 / train_step_seconds(name, 28, 64, args.repeats)
        step160 = train_step_seconds(name, 28, 160, args.repeats)
        print(
            f"{name:<11}{parameters(name, 28):>10,}{parameters(name, 128):>11,}"
            f"{latencies[0]:>10.2f}{latencies[1]:>8.2f}{latencies[2]:>8.2f}{latencies[3]:>9.2f}"
            f"{throughput:>13,.0f}{1000 * step160:>13.1f}{16 * 100 * step160:>14.0f}"
        )


if __name__ == "__main__":
    main()
