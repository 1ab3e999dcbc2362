"""Temperature scaling fitted on training subjects only; expected calibration error and
reliability diagrams: ``mefnet-table DIR --calibration``.

Everything is computed from a run's stored predictions (the ``prob_<class>`` columns of
each fold's ``predictions.csv``), like the rest of the report.

**Which clips fit each fold's temperature.** A fold's test clips are rescaled with a
temperature ``T`` fitted on the *out-of-fold predictions of that fold's training subjects*:
the stored test predictions of every other fold's clips, each made by the model of the fold
where that clip's subject was the test subject. The test fold's own clips (their labels and
their probabilities) never enter its temperature: changing them leaves it unchanged (tested).
Why these clips and not an inner split made for calibration: the recipe trains for a fixed
number of epochs and holds no subject out, so a calibration split would need every fold
retrained without it (a different model from the one reported); the out-of-fold predictions
already exist, and each is a prediction on a subject its model never saw, which is the
situation the calibrated model is in. What remains: the models that predicted the other
subjects were trained with the test subject among their training subjects, so the test
subject's labels reach its temperature only through those models' weights, never through
its own predictions or labels. Under ``protocol=lodo`` a fold is a held-out dataset and
the same rule holds (the other datasets' out-of-fold predictions).

**Temperature.** With ``z = log p`` (the stored probabilities; the log of a softmax is the
logits up to a constant per clip, so ``softmax(z / T)`` is the temperature-scaled softmax),
``T`` minimises the mean negative log-likelihood of the training subjects' clips. That NLL
is convex in ``1 / T``, so a golden-section search over ``log(1 / T)`` in
``[1/100, 100]`` finds its minimum; it is deterministic. With test-time mirroring the
stored probabilities are a mean of two softmaxes, and ``T`` then scales their log.

**Expected calibration error** (ECE): clips binned by confidence (the largest class
probability) into 15 equal-width bins; ECE is the sum over bins of (bin clips / clips) x
|accuracy in the bin - mean confidence in the bin|. Reported before and after scaling,
with the NLL, per seed, pooled over all folds of the seed; the reliability diagram pools
the experiment's seeds.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mefnet.runs.store import ReportError, Run
from mefnet.utils.figure_output import save

N_BINS = 15
LOG_BETA_RANGE = (math.log(1e-2), math.log(1e2))
PROB_FLOOR = 1e-12
PROB_PREFIX = "prob_"


@dataclass
class RunCalibration:
    """One run (seed) calibrated fold by fold."""

    experiment: str
    seed: int
    clips: int
    temperatures: dict[str, float]
    """fold -> temperature fitted on the other folds' clips"""
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    confidence_before: np.ndarray = field(repr=False)
    confidence_after: np.ndarray = field(repr=False)
    correct: np.ndarray = field(repr=False)


def _softmax_log(z: np.ndarray, beta: float) -> np.ndarray:
    s = z * beta
    s = s - s.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def nll(z: np.ndarray, y: np.ndarray, beta: float = 1.0) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``softmax(beta * z)``."""
    return float(-_softmax_log(z, beta)[np.arange(len(y)), y].mean())


def fit_temperature(z: np.ndarray, y: np.ndarray, iterations: int = 100) -> float:
    """The temperature ``T`` minimising :func:`nll` of ``softmax(z / T)`` (golden section
    over ``log(1 / T)``; see the module docstring)."""
    if len(y) == 0:
        raise ReportError("temperature scaling needs at least one training clip")
    lo, hi = LOG_BETA_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(z, y, math.exp(a)), nll(z, y, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(z, y, math.exp(b))
    return 1.0 / math.exp((lo + hi) / 2)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE over ``n_bins`` equal-width confidence bins (see the module docstring)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def _arrays(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log probabilities ``(clips, k)``, true labels, fold of each clip) of a run."""
    names = list(run.record["class_names"])
    try:
        p = np.array([[float(r[PROB_PREFIX + c]) for c in names] for r in run.predictions])
    except (KeyError, TypeError, ValueError):
        raise ReportError(f"{run.dir} ({run.name} seed {run.seed}): predictions.csv has no valid "
                          f"{', '.join(PROB_PREFIX + c for c in names)} columns; calibration needs the "
                          "stored class probabilities") from None
    z = np.log(np.clip(p, PROB_FLOOR, None))
    y = np.array([int(r["true"]) for r in run.predictions])
    folds = np.array([str(r["fold"]) for r in run.predictions])
    return z, y, folds


def calibrate_run(run: Run) -> RunCalibration:
    """Each fold's temperature fitted on the other folds' clips, and the scores before and
    after (pooled over the run's folds)."""
    if not run.predictions:
        raise ReportError(f"{run.dir} ({run.name} seed {run.seed}) has no finished fold to calibrate")
    z, y, folds = _arrays(run)
    order = list(dict.fromkeys(folds))
    if len(order) < 2:
        raise ReportError(f"{run.dir} ({run.name} seed {run.seed}) has one fold: no training subject's "
                          "out-of-fold prediction to fit its temperature on")
    log_after = np.empty_like(z)
    temperatures = {}
    for fold in order:
        test = folds == fold
        t = fit_temperature(z[~test], y[~test])
        temperatures[fold] = t
        log_after[test] = _softmax_log(z[test], 1.0 / t)
    log_before = _softmax_log(z, 1.0)
    idx = np.arange(len(y))
    pred = z.argmax(axis=1)  # scaling never changes the predicted class
    correct = (pred == y).astype(float)
    conf_before = np.exp(log_before.max(axis=1))
    conf_after = np.exp(log_after.max(axis=1))
    return RunCalibration(
        experiment=run.name, seed=run.seed, clips=len(y), temperatures=temperatures,
        ece_before=expected_calibration_error(conf_before, correct),
        ece_after=expected_calibration_error(conf_after, correct),
        nll_before=float(-log_before[idx, y].mean()), nll_after=float(-log_after[idx, y].mean()),
        confidence_before=conf_before, confidence_after=conf_after, correct=correct,
    )


def reliability_diagram(calibrations: list[RunCalibration], path: str | Path, n_bins: int = N_BINS) -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling, over the
    clips of ``calibrations`` (the seeds of one experiment), in the format and resolution of
    :func:`mefnet.utils.figure_output.figure_output` (PNG by default)."""
    from matplotlib.figure import Figure

    correct = np.concatenate([c.correct for c in calibrations])
    fig = Figure(figsize=(10.0, 4.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    edges = np.linspace(0, 1, n_bins + 1)
    for ax, (label, conf, ece) in zip(axes, [
        ("before", np.concatenate([c.confidence_before for c in calibrations]),
         statistics.fmean(c.ece_before for c in calibrations)),
        ("after temperature scaling", np.concatenate([c.confidence_after for c in calibrations]),
         statistics.fmean(c.ece_after for c in calibrations)),
    ], strict=True):
        bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
        acc = np.array([correct[bins == b].mean() if (bins == b).any() else np.nan for b in range(n_bins)])
        mean_conf = np.array([conf[bins == b].mean() if (bins == b).any() else np.nan for b in range(n_bins)])
        counts = np.bincount(bins, minlength=n_bins)
        ax.bar(edges[:-1], np.nan_to_num(acc), width=1 / n_bins, align="edge", edgecolor="black",
               color="tab:blue", alpha=0.7, label="accuracy")
        ax.plot(mean_conf, acc, "o", color="tab:red", markersize=4, label="accuracy at the mean confidence of the bin")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        for b in np.flatnonzero(counts):
            ax.text(edges[b] + 0.5 / n_bins, 0.02, str(counts[b]), ha="center", fontsize=6, rotation=90)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (largest class probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{label}: ECE {ece:.4f} (mean over seeds)", fontsize=10)
        ax.legend(loc="upper left", fontsize=7)
    seeds = ", ".join(str(c.seed) for c in calibrations)
    fig.suptitle(f"{calibrations[0].experiment}: reliability, seeds {seeds}, {len(correct)} clips "
                 "(bin counts at the bottom)", fontsize=11)
    return save(fig, path)


def calibration_markdown(results: list[RunCalibration]) -> str:
    """``calibration.md``: temperature, ECE and NLL before and after scaling, one row per run,
    with the method's note."""
    head = ("| experiment | seed | clips | temperature (median over folds, min-max) | ECE before | ECE after "
            "| NLL before | NLL after |\n|---|---:|---:|---|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {c.experiment} | {c.seed} | {c.clips} | {statistics.median(c.temperatures.values()):.3f} "
        f"({min(c.temperatures.values()):.3f}-{max(c.temperatures.values()):.3f}) | {c.ece_before:.4f} | "
        f"{c.ece_after:.4f} | {c.nll_before:.4f} | {c.nll_after:.4f} |\n"
        for c in results
    )
    note = ("\nTemperature scaling per fold, fitted on the out-of-fold predictions of that fold's training "
            "subjects only (never on the test subject's clips); ECE over 15 equal-width confidence bins, "
            "pooled over the folds of the seed; method and its limits: mefnet/report/calibration.py.\n")
    lo, hi = (1 / math.exp(b) for b in reversed(LOG_BETA_RANGE))
    if any(not lo * 1.001 < t < hi * 0.999 for c in results for t in c.temperatures.values()):
        note += (f"A temperature at {lo:g} or {hi:g} is the search's bound: at {hi:g} the training subjects' "
                 "probabilities carry no information about their labels, and scaling flattens them to uniform.\n")
    return head + body + note


def write_calibration(groups: list[list[Run]], out_dir: str | Path, figures: bool = True,
                      stem=None) -> list[Path]:
    """``calibration.md`` / ``calibration.csv`` (per experiment and seed),
    ``calibration_folds.csv`` (each fold's temperature) and, with ``figures``,
    ``reliability_<experiment>.png`` in ``out_dir``. ``stem(name)`` names the images."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    written = []
    for group in groups:
        calibrated = [calibrate_run(run) for run in group if run.predictions]
        results += calibrated
        if figures and calibrated:
            name = stem(group[0].name) if stem else group[0].name
            written.append(reliability_diagram(calibrated, out / f"reliability_{name}.png"))
    (out / "calibration.md").write_text(calibration_markdown(results))
    with (out / "calibration.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "seed", "clips", "temperature_median", "ece_before", "ece_after",
                    "nll_before", "nll_after"])
        for c in results:
            w.writerow([c.experiment, c.seed, c.clips, f"{statistics.median(c.temperatures.values()):.6f}",
                        f"{c.ece_before:.6f}", f"{c.ece_after:.6f}", f"{c.nll_before:.6f}", f"{c.nll_after:.6f}"])
    with (out / "calibration_folds.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "seed", "fold", "temperature"])
        for c in results:
            for fold, t in c.temperatures.items():
                w.writerow([c.experiment, c.seed, fold, f"{t:.6f}"])
    return [out / "calibration.md", out / "calibration.csv", out / "calibration_folds.csv", *written]
