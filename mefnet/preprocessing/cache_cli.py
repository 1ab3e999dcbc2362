"""``mefnet-cache``: fill the flow cache ahead of a sweep and say what was done.

::

    mefnet-cache dataset=casme2 preprocessing.size=28 preprocessing.n_jobs=2
    mefnet-cache dataset=megc2019 flow=tvl1          # any mefnet-train override

The config is ``conf/train.yaml`` (through ``conf/cache.yaml``), so the cache keys match
what ``mefnet-train`` with the same overrides looks up: run this first and the sweep
starts from a full cache. The fill resumes where an earlier (killed) one stopped, runs
``preprocessing.n_jobs`` worker processes, and is safe with another fill of the same
cache running at the same time (atomic writes; see :mod:`mefnet.preprocessing.cache`).

It prints the clips in the index, how many were already cached, computed, or failed
(with the reason for each failure), the time and pairs per second, and the cache folder.
``<cache_dir>/runs/<dataset>-<time>/clips.csv`` lists every clip with its onset, apex
and ``apex_source`` (how the apex was chosen), its cache key and status. The exit
status is 1 when any clip failed.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mefnet.config import CONFIG_DIR, register_resolvers
from mefnet.datasets.clip_index import COLUMNS, ClipIndex
from mefnet.preprocessing.cache import FlowCache
from mefnet.preprocessing.features import FillReport, Preprocessing, fill_cache
from mefnet.utils.cli import cli
from mefnet.utils.files import atomic_path

log = logging.getLogger("mefnet.cache")

CLIP_LIST = "clips.csv"


def write_clip_list(path: Path, index: ClipIndex, report: FillReport) -> Path:
    """Every clip's index row (onset, apex, apex_source ...) with its cache key and status."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, "cache_key", "status", "reason"])
        for rec, key, status, reason in zip(
            index.to_records(), report.keys, report.status, report.reasons, strict=True
        ):
            w.writerow([*(rec[c] for c in COLUMNS), key, status, reason])
    return path


def run(index: ClipIndex, prep: Preprocessing, cache_dir: str | Path, n_jobs: int = 1,
        record_dir: str | Path | None = None) -> FillReport:
    """Fill the cache under ``cache_dir`` with the input maps of ``index`` made as ``prep``
    says (``n_jobs`` processes) and print what was done; the clip list goes to ``record_dir``."""
    cache_dir = str(Path(cache_dir).expanduser().resolve())
    n_jobs = max(1, int(n_jobs))
    print(index.summary())
    if index.skipped:
        print(f"left out by the dataset adapter: {len(index.skipped)}")
        for reason in index.skipped:
            print(f"  {reason}")
    stale = FlowCache(cache_dir).remove_stale_temporaries()
    if stale:
        print(f"removed {stale} temporary file(s) left by killed runs")
    report = fill_cache(index, prep, cache_dir, n_jobs=n_jobs, progress=True, on_error="skip")
    for line in report.lines():
        print(line)
    if record_dir is not None:
        listed = write_clip_list(Path(record_dir) / CLIP_LIST, index, report)
        print(f"clip list (onset, apex, apex_source, cache key, status): {listed}")
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="cache")
def _main(cfg: DictConfig) -> None:
    """The command: the composed config (a train config) read here, once, into what :func:`run` takes."""
    from hydra.core.hydra_config import HydraConfig

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cache_dir = cfg.preprocessing.cache_dir
    index: ClipIndex = instantiate(cfg.dataset.index)
    prep = Preprocessing.from_config(cfg.preprocessing)
    report = run(index, prep, cache_dir, int(cfg.preprocessing.n_jobs),
                 record_dir=HydraConfig.get().runtime.output_dir)
    if report.failed:
        raise SystemExit(1)


def main() -> None:
    """Console entry point (``mefnet-cache``)."""
    register_resolvers()
    cli("mefnet-cache", _main)


if __name__ == "__main__":
    sys.exit(main())
