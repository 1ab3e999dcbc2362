"""Every shell line of README.md and docs/*.md is a test (issue "The first hour", point 1).

Each ```bash line of the documentation is found here by file and line, and is one of:

* a ``mefnet-train`` line: composed through the real console entry point
  (``mefnet.experiment.train.main``, ``--cfg job --resolve``) with the ``export``s of its
  block in the environment and ``/path/to/...`` placeholders replaced by a fake tree's
  path; the test fails when it does not compose, or when it would train on other data
  than the line names (the dataset it names, its experiment's own dataset, or any data
  but the synthetic set while a dataset root is exported). Fast: one process, about
  0.5 s a line.
* a line of a block in ``RUN_BLOCKS``: the whole block runs, as written, through the
  installed console scripts against a tiny fake tree of the layout it names
  (``tests/flow_trees.py``, a ``frames_csv`` tree of synthetic frames), with only size
  overrides appended (epochs, pretraining clips) that cannot change which data it reads;
  the test then checks every ``experiment.json`` written names the fake tree's dataset
  and clip count. Slow.
* a line ``tests/test_readme_examples.py`` runs (the README's synthetic quick start and
  its trained-model commands).
* a line in ``NOT_RUN``, with the reason it cannot run here (it installs, needs a licensed
  dataset's own files, or is a job of tens of minutes that another test runs small).

A documented line in none of these fails ``test_every_documented_line_is_checked``,
naming its file and line: a new command in the docs needs a test.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flow_trees import make_flow_folder
from tests.test_readme_examples import DOCS_RUN
from tests.test_readme_examples import RUN as README_RUN

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Generated from conf/ and --help: they hold no shell block of their own.
GENERATED = {"docs/configuration.md", "docs/cli.md", "docs/changelog.md"}
ROOTS = ("MEFNET_FLOW_ROOT", "MEFNET_FRAMES_ROOT", "MEFNET_CASME2_ROOT", "MEFNET_SAMM_ROOT",
         "MEFNET_SMIC_ROOT", "MEFNET_CASME3_ROOT")


def doc_files() -> list[Path]:
    """README.md and every hand-written page of docs/."""
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md") if p.relative_to(ROOT).as_posix() not in GENERATED)
    return [ROOT / "README.md", *pages]


def doc_blocks() -> list[tuple[str, list[tuple[int, str]]]]:
    """Each ```bash block as (file, [(line number, command)]): continuations joined,
    comments dropped, runs of spaces made one."""
    blocks = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT).as_posix()
        for m in re.finditer(r"```bash\n(.*?)```", text, flags=re.S):
            first = text[:m.start()].count("\n") + 2
            lines, pending, start = [], "", 0
            for i, raw in enumerate(m.group(1).splitlines()):
                if not pending:
                    start = first + i
                if raw.rstrip().endswith("\\"):
                    pending += raw.rstrip()[:-1] + " "
                    continue
                line = re.sub(r"\s+#.*$", "", pending + raw).strip()
                pending = ""
                if line and not line.startswith("#"):
                    lines.append((start, re.sub(r"\s+", " ", line)))
            blocks.append((rel, lines))
    return blocks


def doc_lines() -> list[tuple[str, int, str]]:
    return [(rel, n, line) for rel, lines in doc_blocks() for n, line in lines]


def _id(item) -> str:
    return f"{item[0]}:{item[1]}"


# Lines that are not run here, each with its reason.
NOT_RUN = {
    "cp -r /path/to/megc2019_flows /tmp/au_dev": "copies the licensed MEGC2019 flow images",
    "mefnet-aus attach /tmp/au_dev --casme2-sheet /path/to/CASME2-coding-20140508.xlsx":
        "needs the licensed CASME II coding sheet (tests/test_au_flows.py runs attach on the real sheet where present)",
    "mefnet-table outputs/au-ststnet outputs/au-ststnet-shuffled outputs/au-am3f --out outputs/au-table":
        "needs the real-data AU runs above",
    "python benchmarks/au_real.py outputs/au-ststnet outputs/au-am3f outputs/au-ststnet-shuffled":
        "reads the real-data AU runs above",
    "mefnet-table outputs/megc2019-am3f-au --ensemble --out outputs/mtl-table":
        "needs the real-data multi-task runs above (an emotion_au run in mefnet-table: tests/test_emotion_au.py)",
    "python benchmarks/au_real.py outputs/megc2019-am3f-au":
        "reads the real-data multi-task runs above (au_real.py on an emotion_au run: tests/test_emotion_au.py)",
    "mefnet-table --compare outputs/megc2019-am3f outputs/megc2019-am3f-au":
        "needs the real-data runs above; --compare in tests/test_paper_reports.py",
    "MEFNET_FLOW_ROOT=/tmp/au_dev mefnet-reproduce --set flows --only megc2019-au":
        "the set flows' AU rows on the real flow images; tests/test_reproduce_flows.py runs the set on a fake flow folder",
    "make install": "installs the package (CI's set-up step does this)",
    "source .venv/bin/activate": "changes the user's shell; the tests call .venv/bin/mefnet-* by path",
    "python3 -m venv .venv": "installs (CI's set-up step)",
    ".venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu":
        "downloads from the package index (CI installs the same pin)",
    "pip install 'mefnet[onnx]'": "installs (the onnx extra is part of make install)",
    "make reproduce-table": "the whole synthetic set, about 13 min: tests/test_reproduce_slow.py runs it (make check-readme)",
    "make test": "the test suite itself",
    "make test-unit": "the test suite itself",
    "make test-slow": "the test suite itself",
    "make check-readme": "the test suite itself (tests/test_reproduce_slow.py)",
    "make lint": "CI runs it as its own step",
    "make docs": "CI runs it as its own step",
    "MEFNET_FLOW_ROOT=/path/to/megc2019_flows make reproduce-table":
        "the set flows, over an hour; tests/test_reproduce_flows.py runs the set on a fake flow folder",
    "MEFNET_FLOW_ROOT=/path/to/megc2019_flows make reproduce-table ARGS='--only megc2019-am3f'":
        "the set flows; tests/test_reproduce_flows.py runs --only on a fake flow folder",
    "mefnet-reproduce --set flows --only megc2019-am3f megc2019-ststnet-paper trainer.max_epochs=20":
        "the set flows (tests/test_reproduce_flows.py)",
    "mefnet-aus attach data/megc2019_flows --casme2-sheet CASME2-coding-20140508.xlsx "
    "--samm-sheet SAMM_Micro_FACS_Codes_v2.xlsx":
        "needs the licensed CASME II / SAMM coding sheets (tests/test_au_flows.py runs it on the real sheets where present)",
    "python benchmarks/recipe_dev.py --root /path/to/megc2019_flows --out /tmp/r1 --seeds 1 2 3 --jobs 3 "
    "hflip=1 translate=2 zoom=0.1": "a research benchmark of hours on the MEGC2019 flow images",
    "python benchmarks/recipe_dev.py --root /path/to/megc2019_flows --analyse /tmp/r1":
        "reads the output of the line before",
    "python benchmarks/recipe_dev.py --root /path/to/megc2019_flows --out /tmp/a17 --seeds 1 2 3 --jobs 2 $K":
        "a research benchmark on the MEGC2019 flow images (round 2's member A)",
    "python benchmarks/recipe_dev.py --root /path/to/megc2019_flows --out /tmp/b_nomsff --seeds 1 2 3 --jobs 2 $K "
    "msff=off": "a research benchmark on the MEGC2019 flow images (round 2's member B)",
    "python benchmarks/recipe_dev.py --root /path/to/megc2019_flows --out /tmp/c_stst --seeds 1 2 3 --jobs 2 $K "
    "backbone=ststnet": "a research benchmark on the MEGC2019 flow images (round 2's member C)",
    "python benchmarks/recipe_dev.py --root /path/to/megc2019_flows --combine /tmp/a17 /tmp/b_nomsff /tmp/c_stst":
        "reads the three research runs above",
    "mefnet-table outputs --name 'megc2019-*' --combine megc2019-am3f-nomsff+megc2019-ststnet --ensemble "
    "--out outputs/ensemble-table": "needs the real-data runs above; --combine in tests/test_ensemble.py",
    "wandb sync outputs/<experiment>/seed_42/folds/*/*/wandb/offline-run-* outputs/<experiment>/seed_42/wandb/offline-run-*":
        "uploads to a wandb server",
    "mefnet-synth --root /tmp/my_synthetic --seed 1":
        "writes a 200-clip dataset to /tmp; the generator behind it is tested in tests/test_synthetic.py",
}

# Non-training lines not run here: what they need, and the test of the code behind them.
ELSEWHERE = {
    "mefnet-table outputs --name 'casme2-*' --out paper/casme2":
        "needs CASME II runs; --name in tests/test_table.py",
    "mefnet-table outputs/megc2019-am3f-logit_adjusted": "needs a real-data run; tests/test_table.py",
    "mefnet-table outputs --name 'megc2019-*' --out paper":
        "needs real-data runs; --name in tests/test_table.py",
    "mefnet-table outputs/sweep --allow-missing":
        "needs a sweep's folder; --allow-missing is run through the command in tests/test_table.py",
    "mefnet-table outputs --name 'smic-*' --latex --curves --out paper/smic":
        "needs SMIC runs; --latex in tests/test_uncertainty.py, --curves in tests/test_figure_formats.py",
    "mefnet-table --compare outputs/smic-am3f-cross_entropy outputs/smic-ststnet-cross_entropy":
        "needs SMIC runs; --compare in tests/test_paper_reports.py",
    "mefnet-table outputs/megc2019-am3f --ensemble": "needs the recipe's seeds; --ensemble in tests/test_ensemble.py",
    "mefnet-table outputs/megc2019-am3f --calibration":
        "needs the recipe's seeds; --calibration is run through the command in tests/test_uncertainty.py",
    "mefnet-table --compare outputs/megc2019-am3f/seed_1 outputs/megc2019-ststnet-paper/seed_42":
        "needs the set flows' runs; --compare in tests/test_paper_reports.py",
    "mefnet-table outputs/megc2019-am3f outputs/flow_folder-ststnet-paper --ensemble --out outputs/dev-table":
        "the two runs of the docs/training.md block run below; --ensemble in tests/test_ensemble.py",
    "mefnet-cache dataset=casme2 preprocessing.size=28 preprocessing.n_jobs=2":
        "needs the licensed CASME II frames; mefnet-cache on synthetic data in tests/test_flow_cache.py",
    "mefnet-predict $M --frames recordings/clip07/ --onset 117 --apex 123":
        "a frame folder of the user's; frame folders through the Python API in tests/test_predict.py",
    "mefnet-predict $M --frames clip07/ --onset 117 --offset 140":
        "a frame folder of the user's; --offset (spotting) through the Python API in tests/test_predict.py",
    "mefnet-predict $M --frames interview.mp4 --onset 40":
        "a video of the user's; videos through the Python API in tests/test_predict.py",
    "mefnet-predict $E --batch clips.csv --out predictions.json":
        "a clip list of the user's; --batch is run through the command in tests/test_predict.py",
    "mefnet-pictures $E --dataset --out pictures-classes/":
        "draws every class of a dataset; --dataset is run through the command in tests/test_pictures.py",
    "for s in 1 2 3; do mefnet-train experiment=ststnet_paper n_jobs=2 seed=$s; done":
        "800 epochs a seed; its mefnet-train line is composed below, and tests/test_first_hour.py trains "
        "experiment=ststnet_paper on a fake flow folder",
}

# Shell lines that only set a variable (run with their block), and a loop's own lines.
SETTERS = re.compile(r"^(export )?([A-Z_][A-Z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S+)$")
LOOP = re.compile(r"^(for \w+ in [^;]*; do|done)$")

# What a recipe trains on when the line names no dataset.
EXPERIMENT_DATA = {"megc2019_flows": "flow_folder", "ststnet_paper": "flow_folder",
                   "megc2019_flows_nomsff": "flow_folder", "megc2019_flows_ststnet": "flow_folder",
                   "offapexnet_paper": "flow_folder", "megc2019": "megc2019", "smic_dev": "flow_folder"}


def _placeholders(text: str, trees: dict[str, Path]) -> str:
    """``/path/to/<name>`` (and the docs' ``/data/<name>`` roots) replaced by a fake tree."""
    def sub(m: re.Match) -> str:
        return str(trees.get(m.group(1), trees["default"]))
    return re.sub(r"/(?:path/to|data)/([\w.-]+)", sub, text)


def _block_vars(lines: list[tuple[int, str]], upto: int) -> tuple[dict[str, str], dict[str, str]]:
    """The variables the block's lines before line ``upto`` set: (exported, all)."""
    env, shell = {}, {}
    for n, line in lines:
        if n >= upto:
            break
        m = SETTERS.fullmatch(line)
        if m:
            value = shlex.split(m.group(3))[0] if m.group(3)[0] in "'\"" else m.group(3)
            shell[m.group(2)] = value
            if m.group(1):
                env[m.group(2)] = value
    return env, shell


def _expand(text: str, shell: dict[str, str]) -> str:
    """``$NAME`` from the block's variables; a loop variable (``$s``, ``$seed``) as 1."""
    return re.sub(r"\$(\w+)", lambda m: shell.get(m.group(1), "1"), text)


def _single_run(args: list[str]) -> list[str]:
    """A multirun's overrides as one run's: the first value of each sweep."""
    out = []
    for a in args:
        if a == "-m":
            continue
        key, _, value = a.partition("=")
        if value.startswith("interval("):
            value = value[len("interval("):].split(",")[0]
        elif "," in value and not re.match(r"^[\[{'\"(]", value):
            value = value.split(",")[0]
        out.append(f"{key}={value}" if _ else a)
    return out


def _train_lines() -> list[tuple[str, int, str, dict[str, str]]]:
    """Every documented ``mefnet-train`` line with its block's exports."""
    out = []
    for rel, lines in doc_blocks():
        for n, line in lines:
            m = re.search(r"(?:^|; do )mefnet-train (.*?)(?:; done)?$", line)
            if m or line == "mefnet-train":
                env, shell = _block_vars(lines, n)
                out.append((rel, n, _expand(m.group(1), shell) if m else "", env))
    return out


def test_every_documented_line_is_checked():
    train = {(rel, n) for rel, n, _, _ in _train_lines()}
    run_blocks = [lines for rel, lines in doc_blocks() if (rel, _block_start(rel, lines)) in RUN_BLOCKS]
    run = {line for lines in run_blocks for _, line in lines}  # the same command elsewhere is the same test
    unchecked = [f"{rel}:{n}: {line}" for rel, n, line in doc_lines()
                 if (rel, n) not in train and line not in run and line not in README_RUN and line not in DOCS_RUN
                 and line not in NOT_RUN and line not in ELSEWHERE and not SETTERS.match(line)
                 and not LOOP.match(line)]
    assert not unchecked, ("documented shell lines no test runs (run them in tests/test_docs_commands.py, "
                           "or list them in NOT_RUN with the reason):\n" + "\n".join(unchecked))


def test_the_lists_name_only_documented_lines():
    documented = {line for _, _, line in doc_lines()}
    stale = [line for line in [*NOT_RUN, *ELSEWHERE] if line not in documented]
    assert not stale, f"no longer in the docs (remove from tests/test_docs_commands.py): {stale}"


@pytest.fixture(scope="module")
def fake_trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trees")
    flows = make_flow_folder(base / "megc2019_flows", {"smic": 2, "casme2": 1}, clips_per_subject=6)
    smic = make_flow_folder(base / "megc2019_smic_flows", {"smic": 3}, clips_per_subject=3)
    return {"megc2019_flows": flows, "megc2019_smic_flows": smic, "default": base / "missing",
            "my_lab": base / "my_lab"}


def _compose(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``mefnet-train ARGS --cfg job --resolve`` in this process: exit status, stdout, stderr."""
    from mefnet.experiment.train import main

    saved = {k: os.environ.get(k) for k in [*ROOTS, *env]}
    argv = sys.argv
    for k in ROOTS:
        os.environ.pop(k, None)
    os.environ.update(env)
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        sys.argv = ["mefnet-train", *args, "--cfg", "job", "--resolve"]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        err.write(str(e.code))
    finally:
        sys.argv = argv
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def _training_line_problem(item: tuple[str, int, str, dict[str, str]], trees: dict[str, Path]) -> str | None:
    """Why the documented ``mefnet-train`` line ``item`` is wrong, or None: it does not
    compose, or it would train on other data than it names."""
    import yaml

    rel, n, args_text, env = item
    env = {k: _placeholders(v, trees) for k, v in env.items()}
    args = _single_run(shlex.split(_placeholders(args_text, trees)))
    code, out, err = _compose(args, env)
    if code != 0:
        return f"{rel}:{n}: mefnet-train {args_text}\n{err[-2000:]}"
    data = yaml.safe_load(out)["dataset"]["name"]
    named = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith(("+", "~", "'")))
    if "dataset" in named:
        expected = named["dataset"]
    elif named.get("experiment") in EXPERIMENT_DATA:
        expected = EXPERIMENT_DATA[named["experiment"]]
    elif "reproduce" in named:
        expected = data  # a set chooses per run
    else:
        expected = "synthetic"
    if data != expected:
        return f"{rel}:{n}: mefnet-train {args_text} would train on {data}, not {expected}"
    exported = sorted(k for k in env if k in ROOTS)
    if data == "synthetic" and exported and "debug" not in named:
        return f"{rel}:{n}: mefnet-train {args_text} trains on the synthetic set although the block exports {exported}"
    return None


@pytest.mark.parametrize("item", _train_lines(), ids=_id)
def test_a_documented_training_line_composes_and_names_its_data(item, fake_trees):
    problem = _training_line_problem(item, fake_trees)
    assert problem is None, problem


def test_the_training_line_check_notices_wrong_data_and_bad_overrides(fake_trees, monkeypatch):
    flows = {"MEFNET_FLOW_ROOT": "/path/to/megc2019_flows"}
    problem = _training_line_problem(("x.md", 1, "experiment=synthetic_ststnet", flows), fake_trees)
    assert problem and "synthetic set although the block exports ['MEFNET_FLOW_ROOT']" in problem
    # A recipe for a flow folder whose config sets no dataset (the old experiment=ststnet_paper).
    monkeypatch.setitem(EXPERIMENT_DATA, "synthetic_ststnet", "flow_folder")
    problem = _training_line_problem(("x.md", 2, "experiment=synthetic_ststnet", {}), fake_trees)
    assert problem and "would train on synthetic, not flow_folder" in problem
    problem = _training_line_problem(("x.md", 3, "dataset.index.no_such_key=1", {}), fake_trees)
    assert problem and "x.md:3" in problem and "no_such_key" in problem


# Blocks run as written (slow), keyed by (file, first line); the size overrides appended to
# each mefnet-train line of the block; the experiments the block must write, each with the
# dataset it must have read.
SMALL = ["trainer.max_epochs=1", "preprocessing.n_jobs=1"]
PRETRAIN_SMALL = ["pretrain.epochs=1", "pretrain.data.index.num_clips=24", "pretrain.data.index.num_subjects=4",
                  "pretrain.data.index.frame_size=48", "pretrain.data.index.frames_per_clip=[5,6]"]
RUN_BLOCKS: dict[tuple[str, int], dict] = {}


def _block_start(rel: str, lines: list[tuple[int, str]]) -> int:
    return lines[0][0] if lines else 0


def _find_block(rel: str, first_line: str) -> tuple[str, int] | None:
    for r, lines in doc_blocks():
        if r == rel and lines and lines[0][1] == first_line:
            return (r, lines[0][0])
    return None


def _register(rel: str, first_line: str, expect: dict[str, tuple[str, int]]) -> None:
    key = _find_block(rel, first_line)
    if key is None:  # the test below names it
        RUN_BLOCKS[(rel, -1)] = {"first": first_line, "expect": expect}
    else:
        RUN_BLOCKS[key] = {"first": first_line, "expect": expect}


FLOW_CLIPS = 18  # make_flow_folder({"smic": 2, "casme2": 1}, clips_per_subject=6)
_register("docs/training.md", "export MEFNET_FLOW_ROOT=/path/to/megc2019_flows",
          {"outputs/megc2019-am3f": ("flow_folder", FLOW_CLIPS),
           "outputs/flow_folder-ststnet-paper": ("flow_folder", FLOW_CLIPS)})
_register("README.md", "export MEFNET_FLOW_ROOT=/path/to/megc2019_flows",
          {"outputs/flow_folder-ststnet-cross_entropy": ("flow_folder", FLOW_CLIPS),
           "outputs/megc2019-am3f": ("flow_folder", FLOW_CLIPS)})
_register("docs/datasets.md", "export MEFNET_FRAMES_ROOT=/data/my_lab",
          {"outputs/frames_csv-ststnet-cross_entropy": ("frames_csv", 15)})
_register("README.md", "mefnet-train dataset=frames_csv dataset.index.root=/path/to/my_lab",
          {"outputs/frames_csv-ststnet-cross_entropy": ("frames_csv", 15)})
_register("docs/results.md", "mefnet-train dataset=flow_folder dataset.index.root=/path/to/megc2019_smic_flows n_jobs=2",
          {"outputs/flow_folder-ststnet-cross_entropy": ("flow_folder", 9)})


def test_the_blocks_run_here_are_still_in_the_docs():
    gone = [v["first"] for (rel, n), v in RUN_BLOCKS.items() if n < 0]
    assert not gone, f"blocks no longer in the docs (update RUN_BLOCKS in {Path(__file__).name}): {gone}"


def _frames_tree(root: Path) -> Path:
    """A frames_csv tree: 15 synthetic clips of 3 subjects with the docs' labels
    (anger / joy / surprise), in <root>/clips.csv and <root>/<subject>/<clip>/."""
    from mefnet.datasets.synthetic import SyntheticSpec, generate

    frames = generate(SyntheticSpec(seed=3, num_subjects=3, num_clips=15, frame_size=48, frames_per_clip=(5, 6)),
                      root)
    rows = list(csv.DictReader((frames / "annotations.csv").open()))
    rename = {"negative": "anger", "positive": "joy", "surprise": "surprise"}
    label = next(k for k in rows[0] if "emotion" in k.lower())
    for row in rows:
        row[label] = rename[row[label]]
    with (frames / "clips.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return frames


def _script(lines: list[str]) -> str:
    out = ["set -euo pipefail", f"export PATH={shlex.quote(str(BIN))}:$PATH"]
    for line in lines:
        if line.startswith("mefnet-train"):
            extra = SMALL + (PRETRAIN_SMALL if "experiment=megc2019_flows" in line else [])
            line = f"{line} {' '.join(shlex.quote(o) for o in extra)}"
        out.append(line)
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.parametrize("key", [k for k in RUN_BLOCKS if k[1] > 0], ids=lambda k: f"{k[0]}:{k[1]}")
def test_a_documented_block_runs_on_a_fake_tree_of_its_data(key, tmp_path, fake_trees):
    spec = RUN_BLOCKS[key]
    rel, first = key
    lines = next(ls for r, ls in doc_blocks() if r == rel and ls and ls[0][0] == first)
    trees = dict(fake_trees)
    trees["my_lab"] = _frames_tree(tmp_path / "my_lab")
    script = _script([_placeholders(line, trees) for _, line in lines])
    env = {k: v for k, v in os.environ.items() if k not in ROOTS}
    env.update({"MEFNET_OUTPUT_DIR": "outputs", "MEFNET_DATA_DIR": "data"})
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    where = f"{rel}:{first}"
    assert done.returncode == 0, f"{where}:\n{script}\n{(done.stdout + done.stderr)[-4000:]}"
    written = sorted(tmp_path.glob("outputs/**/experiment.json"))
    assert written, f"{where}: wrote no experiment"
    for exp in spec["expect"]:
        records = sorted((tmp_path / exp).glob("seed_*/experiment.json"))
        assert records, f"{where}: no run in {exp}; written: {[str(p.relative_to(tmp_path)) for p in written]}"
    for path in written:
        record = json.loads(path.read_text())
        exp = path.parent.parent.relative_to(tmp_path).as_posix()
        if exp.startswith("outputs/debug") or exp not in spec["expect"]:
            assert record["dataset"] != "synthetic", f"{where}: {exp} trained on the synthetic set"
            continue
        dataset, clips = spec["expect"][exp]
        assert (record["dataset"], record["num_clips"]) == (dataset, clips), \
            f"{where}: {exp} read {record['dataset']} ({record['num_clips']} clips), not {dataset} ({clips})"
