"""Flow-cache throughput and accuracy of each flow preset (``conf/flow/*.yaml``).

Run: ``python benchmarks/bench_flow.py [--clips 120] [--size 128] [--jobs 1 2] [--sintel]``.
Prints a table; asserts nothing.

For every preset and worker count it fills a fresh cache with ``fill_cache`` (what
``mefnet-cache`` and ``mefnet-train`` run) for ``--clips`` synthetic clips of
``--size`` x ``--size`` frames, and reports clip pairs per second of the fill's compute
phase (frames read, flow, strain, resize, normalize, checksummed atomic write). The
worker pool is started before the clock runs. Columns:

- ``pairs/s jN``: throughput of the cache fill with N worker processes (wall clock).
- ``cpu ms/pair``: median CPU time of one clip's maps in one process with one OpenCV
  thread (``time.process_time``); unlike wall-clock throughput, it barely depends on
  what else the machine runs.
- ``EPE IPOL``: mean endpoint error (px) against the IPOL TV-L1 reference flow of the
  CASME II pair ``frames/casme2_sequence/001.jpg -> 002.jpg`` in ../shared/realdata
  (zero flow scores 0.189 there). ``EPE Sintel`` (with ``--sintel``): mean endpoint
  error against the ground truth of MPI-Sintel alley_1 0002 -> 0003 over valid pixels
  (zero flow: 2.98). Both are computed at the frames' native size.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from omegaconf import OmegaConf

from mefnet.config import CONFIG_DIR
from mefnet.datasets.synthetic import load_synthetic
from mefnet.preprocessing.features import Preprocessing, compute_clip_maps, fill_cache
from mefnet.preprocessing.flow import FlowParams, compute_flow, endpoint_error, read_flo

PRESETS = ("tvl1", "tvl1_fast", "dis", "farneback")
REALDATA = Path(os.environ.get("MEFNET_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))


def preset(name: str) -> FlowParams:
    return FlowParams.from_config(OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "flow" / f"{name}.yaml")))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"OpenCV {cv2.__version__}")


def warm_pool(n_jobs: int) -> None:
    """Start joblib's worker processes (and their imports) before the clock runs."""
    if n_jobs > 1:
        from joblib import Parallel, delayed

        Parallel(n_jobs=n_jobs)(delayed(os.getpid)() for _ in range(4 * n_jobs))


def fill_rate(index, prep: Preprocessing, n_jobs: int) -> float:
    warm_pool(n_jobs)
    with tempfile.TemporaryDirectory(prefix="mefnet-bench-cache-") as cache:
        report = fill_cache(index, prep, cache, n_jobs=n_jobs)
        assert report.computed == len(index), report.lines()
        return report.pairs_per_second


def cpu_ms_per_pair(index, prep: Preprocessing, n: int = 15) -> float:
    old = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        compute_clip_maps(index[0], prep)
        times = []
        for clip in list(index)[:n]:
            start = time.process_time()
            compute_clip_maps(clip, prep)
            times.append(time.process_time() - start)
    finally:
        cv2.setNumThreads(old)
    return 1000 * statistics.median(times)


def epe_ipol(params: FlowParams) -> float | None:
    folder = REALDATA / "frames" / "casme2_sequence"
    if not (folder / "ipol_tvl1_001_to_002.flo").is_file():
        return None
    a, b = (cv2.imread(str(folder / f), cv2.IMREAD_GRAYSCALE) for f in ("001.jpg", "002.jpg"))
    return endpoint_error(compute_flow(a, b, params), read_flo(folder / "ipol_tvl1_001_to_002.flo"))


def epe_sintel(params: FlowParams) -> float | None:
    folder = REALDATA / "flow_gt" / "sintel_alley1_clean"
    if not (folder / "gt_flow_0002_to_0003.flo").is_file():
        return None
    a, b = (cv2.imread(str(folder / f), cv2.IMREAD_GRAYSCALE) for f in ("frame_0002.png", "frame_0003.png"))
    valid = cv2.imread(str(folder / "gt_invalid_0002.png"), cv2.IMREAD_GRAYSCALE) == 0
    return endpoint_error(compute_flow(a, b, params), read_flo(folder / "gt_flow_0002_to_0003.flo"), valid)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--size", type=int, default=128, help="synthetic frame size (px)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--sintel", action="store_true", help="also the Sintel error (1024x436, slower)")
    ap.add_argument("--data-dir", default=None, help="where the synthetic frames go (default: a temporary folder)")
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mefnet-bench-data-") as tmp:
        index = load_synthetic(data_dir=a.data_dir or tmp, num_subjects=8, num_clips=a.clips,
                               frame_size=a.size, frames_per_clip=(5, 7))
        print(f"machine: {machine()}")
        print(f"{len(index)} synthetic clips, {a.size}x{a.size} frames, maps at 28x28, face none; "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        cols = [f"pairs/s j{n}" for n in a.jobs] + ["cpu ms/pair", "EPE IPOL"] + (["EPE Sintel"] if a.sintel else [])
        print("| preset | " + " | ".join(cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for name in a.presets:
            params = preset(name)
            prep = Preprocessing(size=28, flow=params)
            row = [f"{fill_rate(index, prep, n):.1f}" for n in a.jobs]
            row.append(f"{cpu_ms_per_pair(index, prep):.1f}")
            for fn in (epe_ipol, *((epe_sintel,) if a.sintel else ())):
                err = fn(params)
                row.append("n/a" if err is None else f"{err:.3f}")
            print(f"| {name} | " + " | ".join(row) + " |", flush=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
