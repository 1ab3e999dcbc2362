"""The step profiler of benchmarks/ still runs the engine's step (it reaches into
mefnet.training.batched, so a change there must not break it silently)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ([], r"am3f, 2 members vmapped, batch 4: [\d.]+ CPU ms a step"),
        (["--backbone", "ststnet", "--recipe", "experiment=ststnet_paper", "--loop"],
         r"ststnet, 2 members looped, batch 4: [\d.]+ CPU ms a step"),
        (["--one-model"], r"am3f, 2 members as one model, batch 4: [\d.]+ CPU ms a step"),
        (["--bf16"], r"am3f, 2 members vmapped, bfloat16 autocast, batch 4: [\d.]+ CPU ms a step"),
    ],
)
def test_profile_step_runs_and_sorts_every_operator(args, expect):
    out = subprocess.run(
        [sys.executable, "benchmarks/profile_step.py", *args, "--members", "2", "--batch", "4", "--steps", "1",
         "--profiled-steps", "1", "--top", "3"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(expect, out.stdout), out.stdout
    rows = dict(re.findall(r"^\| ([a-z][^|]*?) \| ([\d.]+) \| \d+% \|$", out.stdout, flags=re.M))
    assert "convolution forward" in rows and "convolution backward" in rows, out.stdout
    assert float(rows["convolution forward"]) > 0
    # the operator table lists the three most expensive operators with their input shapes
    # (an aten:: operator or an autograd node such as MeanBackward1, whichever cost most)
    assert len(re.findall(r"^\| [A-Za-z_][\w:]* \| [\[(]", out.stdout, flags=re.M)) == 3, out.stdout
