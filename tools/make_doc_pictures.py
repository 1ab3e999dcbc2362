"""Draw the pictures of the documentation site into docs/img/ (rerun after a change that
alters them; nothing is downloaded).

* ``flow_color.png`` and ``attention.png``: ``mefnet-pictures`` on one clip of the built-in
  synthetic dataset, explained by a small AM3F-FlowNet trained on it with ``mefnet-train``
  (6 subjects, 60 clips, 10 epochs, fold ``sub01``, seed 42) in a temporary folder.
* ``results_flows.png``: pooled UF1 of every row for all clips of the development-set
  tables of docs/results.md (the recipe's seeds as mean ± std, its ensemble, the STSTNet
  anchor's seeds and the set's one-seed ablations), read from that page.

    python tools/make_doc_pictures.py            # about a minute on 2 cores
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
BIN = Path(sys.executable).parent
TRAIN = ["backbone=am3f", "loss=logit_adjusted", "fold=sub01", "seed=42", "trainer.max_epochs=10",
         "dataset.index.num_subjects=6", "dataset.index.num_clips=60", "preprocessing.n_jobs=1"]


def pictures(work: Path) -> None:
    """Train the small model, draw one clip's pictures, copy two of them into docs/img/."""
    import cv2

    env = {"MEFNET_OUTPUT_DIR": str(work / "outputs"), "MEFNET_DATA_DIR": str(work / "data"), "PATH": str(BIN)}
    subprocess.run([str(BIN / "mefnet-train"), *TRAIN], cwd=work, env=env, check=True)
    annotations = next((work / "data").glob("synthetic/*/annotations.csv"))
    clip = sorted(p for p in (annotations.parent / "sub01").iterdir() if p.is_dir())[0]
    frames = sorted(clip.glob("img*.png"), key=lambda p: int(p.stem[3:]))
    cv2.imwrite(str(work / "onset.png"), cv2.imread(str(frames[0])))
    cv2.imwrite(str(work / "apex.png"), cv2.imread(str(frames[len(frames) // 2])))
    model = next((work / "outputs").glob("synthetic-am3f-*/seed_42/folds/synthetic/sub01/model.pt"))
    subprocess.run([str(BIN / "mefnet-pictures"), str(model), "--onset", "onset.png", "--apex", "apex.png",
                    "--out", "pictures"], cwd=work, env=env, check=True)
    drawn = next((work / "pictures").glob("*/flow_color.png")).parent
    for name in ("flow_color.png", "attention.png"):
        _small(drawn / name, IMG / name)


def _small(src: Path, dst: Path, width: int = 900) -> None:
    """A copy at most ``width`` pixels wide with a 256-colour palette (the site's pictures
    stay under 200 KB each)."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def _rows(section: str) -> list[list[str]]:
    return [[c.strip(" *") for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ") and not line.startswith("| experiment")]


def results_plot() -> None:
    """A bar per experiment: pooled UF1 over all 309 clips, from docs/results.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    first = text.split("## MEGC2019 development folds", 1)[1].split("## ", 1)[0]
    flows = text.split("## The set `flows` on the development folds", 1)[1].split("## ", 1)[0]
    bars: list[tuple[str, float, float]] = []
    for cells in _rows(first) + _rows(flows):
        if len(cells) < 6 or cells[1] != "all":
            continue
        name = re.sub(r"\s*\(STSTNet.*?\), seeds 1, 2, 3", "", cells[0])
        seeds, uf1 = cells[4], cells[5]
        mean, _, std = uf1.partition("±")
        label = f"{name} ({seeds} seed{'s' if seeds != '1' else ''})" if "ensemble" not in name else name
        if label not in [b[0] for b in bars]:
            bars.append((label, float(mean), float(std) if std.strip() else 0.0))
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(bars) + 1.2), dpi=100)
    names = [b[0] for b in bars][::-1]
    ax.barh(names, [b[1] for b in bars][::-1], xerr=[b[2] for b in bars][::-1],
            color=["#c44e52" if "ststnet" in n else "#4c72b0" for n in names], capsize=3)
    for y, b in enumerate(bars[::-1]):
        ax.text(b[1] + b[2] + 0.003, y, f"{b[1]:.4f}", va="center", fontsize=8)
    ax.set_xlim(0.6, 0.82)
    ax.set_xlabel("pooled UF1, 309 clips (SMIC + CASME II), LOSO; mean ± std over seeds")
    ax.set_title("MEGC2019 development folds (docs/results.md)", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(IMG / "results_flows.png")
    plt.close(fig)


def main() -> int:
    """Draw every picture of the site into docs/img/ and list their sizes."""
    IMG.mkdir(parents=True, exist_ok=True)
    results_plot()
    with tempfile.TemporaryDirectory() as tmp:
        pictures(Path(tmp))
    for p in sorted(IMG.glob("*.png")):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
