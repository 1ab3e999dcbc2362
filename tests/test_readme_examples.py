"""The README's shell examples run as written (in small form) and the paths they use exist.

The ```bash blocks of README.md are parsed; the lines listed in ``RUN`` (the fast ones,
exactly as the README writes them) run in README order in one bash script, in a fresh
folder, with each console script defined as a shell function that calls this checkout's
code. ``mefnet-train`` gets a tiny synthetic dataset and 2 epochs appended; the experiment
names and folders are those the README shows. If the README changes one of these lines,
the test says which one is gone, so the list and the README cannot drift apart.

Afterwards the files the README names exist: the experiment tree of "What an experiment
writes", the fold model the examples load, the predict / pictures / export / table
outputs. The captured output of the whole run is also checked for the noise mefnet
silences (Hydra banners, joblib's repr line, OpenCV warnings, "(1 test clips)").

Slow (about 1 minute alone, 3 under load): `make test-slow` and CI; the check that the
listed lines are still in the README is fast.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Appended to every mefnet-train line: 4 subjects (sub01..sub04), 18 clips, 2 epochs.
SMALL_TRAIN = ["dataset.index.num_subjects=4", "dataset.index.num_clips=18", "dataset.index.frame_size=48",
               "dataset.index.frames_per_clip=[5,6]", "trainer.max_epochs=2", "preprocessing.n_jobs=1"]

# README lines run by this test, in README order (comments after '#' are ignored).
RUN = [
    "mefnet-train",
    "mefnet-train backbone=am3f loss=logit_adjusted",
    "mefnet-train backbone=am3f loss=logit_adjusted fold=none",
    "mefnet-table outputs/synthetic-ststnet-cross_entropy outputs/synthetic-am3f-logit_adjusted --out outputs/compare",
    "mefnet-table outputs",
    "E=outputs/synthetic-am3f-logit_adjusted",
    "M=$E/seed_42/folds/synthetic/sub01/model.pt",
    "mefnet-predict $E --onset onset.png --apex apex.png",
    "mefnet-predict $E --seed 42 --onset onset.png --apex apex.png",
    "mefnet-predict $M --onset pair.gif",
    "mefnet-predict $M --images onset.png apex.png",
    "mefnet-predict $M --frames clip07.txt",
    "mefnet-export $E --seed 42 --torchscript ensemble.torchscript.pt",
    "mefnet-pictures $M --onset onset.png --apex apex.png --out pictures/",
]

# Lines of docs/inference.md run after the README's, on the same runs and inputs.
DOCS = ROOT / "docs" / "inference.md"
DOCS_RUN = [
    "mefnet-export $M --torchscript model.torchscript.pt --onnx model.onnx",
    "mefnet-pictures $E --onset pair.gif --out pictures-all/",
    "mefnet-pictures $M --onset onset.png --apex apex.png --format pdf --out pictures-pdf/",
    "mefnet-pictures $M --onset onset.png --apex apex.png --dpi 300 --out pictures-300dpi/",
]

# Lines of mefnet's own output that must never appear (replaced by our one-liners or silenced).
NOISE = [
    re.compile(r"is powered by Hydra"),
    re.compile(r"Parallel\(n_jobs="),
    re.compile(r"\[ WARN:\d"),
    re.compile(r"findDecoder"),
    re.compile(r"directory .* exists and is not empty"),
    re.compile(r"\(1 test clips\)"),
]


def bash_lines(text: str) -> list[str]:
    """Every command of the README's ```bash blocks: continuations joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(re.sub(r"\s+", " ", line))
    return out


def _prelude() -> str:
    """A bash function per console script, calling this checkout's code."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    lines = ["set -euo pipefail"]
    for name, target in scripts.items():
        module, func = target.split(":")
        call = (f"import sys; sys.argv[0] = {name!r}; from {module} import {func}; "
                f"sys.exit({func}())")
        extra = " ".join(shlex.quote(o) for o in SMALL_TRAIN) if name == "mefnet-train" else ""
        lines.append(f'{name}() {{ {shlex.quote(sys.executable)} -c {shlex.quote(call)} "$@" {extra}; }}')
    return "\n".join(lines)


def _inputs(folder: Path, data: Path) -> None:
    """onset.png / apex.png / pair.gif / clip07.txt from the first synthetic clip of sub01."""
    from PIL import Image

    annotations = next(data.glob("synthetic/*/annotations.csv"))
    clip = sorted(p for p in (annotations.parent / "sub01").iterdir() if p.is_dir())[0]
    frames = sorted(clip.glob("img*.png"), key=lambda p: int(p.stem[3:]))
    onset, apex = cv2.imread(str(frames[0])), cv2.imread(str(frames[len(frames) // 2]))
    cv2.imwrite(str(folder / "onset.png"), onset)
    cv2.imwrite(str(folder / "apex.png"), apex)
    pair = [Image.fromarray(cv2.cvtColor(x, cv2.COLOR_BGR2RGB)) for x in (onset, apex)]
    pair[0].save(folder / "pair.gif", save_all=True, append_images=pair[1:])
    (folder / "clip07.txt").write_text("onset.png\napex.png\n")


def test_the_runnable_examples_are_still_in_the_readme():
    lines = bash_lines(README.read_text(encoding="utf-8"))
    gone = [line for line in RUN if line not in lines]
    assert not gone, f"README.md no longer has these examples (update RUN in {Path(__file__).name}): {gone}"


def test_the_runnable_examples_are_still_in_docs_inference():
    lines = bash_lines(DOCS.read_text(encoding="utf-8"))
    gone = [line for line in DOCS_RUN if line not in lines]
    assert not gone, f"docs/inference.md no longer has these examples (update DOCS_RUN in {Path(__file__).name}): {gone}"


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "MEFNET_OUTPUT_DIR": "outputs", "MEFNET_DATA_DIR": "data",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    lines = [line for line in bash_lines(README.read_text(encoding="utf-8")) if line in RUN]
    train = [line for line in lines if line.startswith("mefnet-train")]
    rest = [line for line in lines if not line.startswith("mefnet-train")]
    rest += [line for line in bash_lines(DOCS.read_text(encoding="utf-8")) if line in DOCS_RUN]
    logs = []
    for part in (train, rest):
        script = "\n".join([_prelude(), *part])
        done = subprocess.run(["bash", "-c", script], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=900)
        logs.append(done.stdout + done.stderr)
        assert done.returncode == 0, logs[-1][-4000:]
        if part is train:
            _inputs(tmp, tmp / "data")
    return tmp, "\n".join(logs)


def _tree(text: str) -> list[str]:
    """The file names of the README's "What an experiment writes" tree."""
    block = text.split("### What an experiment writes", 1)[1].split("```", 2)[1]
    names = []
    for line in block.splitlines()[2:]:
        names += [w for w in line.split() if re.fullmatch(r"[\w<>./-]+\.(json|csv|pt|ckpt|md|png)|/", w)]
    return names


@pytest.mark.slow
def test_readme_examples_run_and_their_paths_exist(readme_run):
    tmp, _ = readme_run
    exp = tmp / "outputs" / "synthetic-am3f-logit_adjusted" / "seed_42"
    fold = exp / "folds" / "synthetic" / "sub01"
    # "What an experiment writes", every file it lists (model.ckpt: save_checkpoint=true, the default).
    for name in ("experiment.json", "clips.csv", "table.md", "table.csv", "table_seeds.csv",
                 "confusion_synthetic-am3f-logit_adjusted.csv", "confusion_synthetic-am3f-logit_adjusted.png"):
        assert (exp / name).is_file(), name
    for name in ("predictions.csv", "fold.json", "model.pt", "model.ckpt", "logs/metrics.csv"):
        assert (fold / name).is_file(), name
    assert (exp / "final" / "model.pt").is_file() and (exp / "final" / "final.json").is_file()
    assert (tmp / "outputs" / "synthetic-ststnet-cross_entropy" / "seed_42" / "table.md").is_file()
    assert (tmp / "outputs" / "compare" / "table.md").is_file()
    assert (tmp / "ensemble.torchscript.pt").is_file()
    assert (tmp / "pictures" / "pictures.json").is_file()
    assert list((tmp / "pictures").glob("*/flow_color.png")), sorted(p.name for p in (tmp / "pictures").iterdir())
    # docs/inference.md's lines: ONNX beside TorchScript, vector and 300-dpi pictures.
    assert (tmp / "model.torchscript.pt").is_file() and (tmp / "model.onnx").is_file()
    assert list((tmp / "pictures-pdf").glob("*/*.pdf")), sorted(str(p) for p in (tmp / "pictures-pdf").rglob("*"))
    assert list((tmp / "pictures-300dpi").glob("*/flow_color.png"))
    assert (tmp / "pictures-all" / "pictures.json").is_file()


@pytest.mark.slow
def test_the_experiment_tree_in_the_readme_lists_what_a_run_writes(readme_run):
    tmp, _ = readme_run
    exp = tmp / "outputs" / "synthetic-am3f-logit_adjusted" / "seed_42"
    text = README.read_text(encoding="utf-8")
    for name in _tree(text):
        if name.endswith("/") or "<" in name and "<experiment>" not in name:
            continue
        name = name.replace("<experiment>", "synthetic-am3f-logit_adjusted")
        found = list(exp.rglob(name)) or list(exp.rglob(Path(name).name))
        assert found, f"README's experiment tree lists {name}, which a run does not write"


@pytest.mark.slow
def test_readme_examples_print_none_of_the_silenced_noise(readme_run):
    _, log = readme_run
    for pattern in NOISE:
        hits = [line for line in log.splitlines() if pattern.search(line)]
        assert not hits, f"{pattern.pattern}: {hits[:3]}"
