"""The flow cache under stress: killed fills, concurrent fills, damaged entries, the
``mefnet-cache`` command, and per-dataset face methods in the cache key."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from mefnet.config import compose
from mefnet.datasets.clip_index import ClipIndex, DatasetError
from mefnet.preprocessing.cache import FlowCache, decode_entry
from mefnet.preprocessing.features import (
    Preprocessing,
    build_features,
    clip_cache_key,
    clip_inputs,
    compute_clip_maps,
    fill_cache,
)
from tests.helpers import TINY_SYNTHETIC

REPO = Path(__file__).resolve().parents[1]

# Slow enough per clip (TV-L1 with OpenCV's defaults on 64x64 frames, about 0.1 s of CPU
# a clip) that a fill can be caught halfway; small enough for the fast suite.
KILL_DATA = [
    "dataset.index.num_subjects=4",
    "dataset.index.num_clips=12",
    "dataset.index.frame_size=64",
    "dataset.index.frames_per_clip=[5,6]",
    "flow=tvl1",
]


def _cli(*overrides: str, cwd: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    env = env or {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "mefnet.preprocessing.cache_cli", *overrides],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def _entries(cache: Path) -> dict[str, bytes]:
    return {p.relative_to(cache).as_posix(): p.read_bytes() for p in cache.glob("??/*.npy")}


def _summary(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            out[key] = value
    return out


def _clean_fill(overrides: list[str], cache: Path) -> tuple[ClipIndex, Preprocessing, dict[str, bytes]]:
    cfg = compose([*overrides, f"preprocessing.cache_dir={cache}"])
    index = instantiate(cfg.dataset.index)
    prep = Preprocessing.from_config(cfg.preprocessing)
    build_features(index, prep, str(cache), n_jobs=1)
    return index, prep, _entries(cache)


def test_a_killed_fill_resumes_and_ends_identical_to_a_clean_fill(tmp_path):
    data = [*KILL_DATA, f"paths.data_dir={tmp_path / 'data'}"]
    index, _, clean = _clean_fill(data, tmp_path / "clean")  # also generates the frames
    assert len(clean) == len(index) == 12
    cache = tmp_path / "cache"
    # Each of the two workers stops after its second entry (a pause point, not a race
    # against a polling loop), and the whole command is killed there.
    pauses = tmp_path / "pauses"
    proc = _cli(*data, f"preprocessing.cache_dir={cache}", "preprocessing.n_jobs=2", cwd=tmp_path,
                start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO), "MEFNET_PAUSE_AT": "cache:2",
                                             "MEFNET_PAUSE_DIR": str(pauses)})
    deadline = time.monotonic() + 300
    while len(list(pauses.glob("cache-*"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the fill ended before its workers reached the pause point"
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes
    proc.communicate()
    at_kill = len(list(cache.glob("??/*.npy")))
    assert at_kill == 4, f"the fill was not stopped at the pause point ({at_kill} entries)"

    # Two fills restart at once on the same cache: both finish, neither breaks the other.
    procs = [_cli(*data, f"preprocessing.cache_dir={cache}", "preprocessing.n_jobs=1", cwd=tmp_path)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        s = _summary(out)
        assert s["clips"] == "12" and s["failed"] == "0", out
        assert int(s["already cached"]) >= at_kill
        assert int(s["already cached"]) + int(s["computed"].split()[0]) == 12, out

    resumed = _entries(cache)
    assert resumed.keys() == clean.keys()
    assert all(resumed[k] == clean[k] for k in clean), "a resumed entry differs from the clean fill"
    for name, blob in resumed.items():
        assert decode_entry(blob, Path(name).stem).shape == (3, 28, 28)


def test_damaged_entries_are_detected_and_recomputed_to_the_clean_value(tmp_path):
    cfg = compose([*TINY_SYNTHETIC, f"paths.data_dir={tmp_path / 'data'}"])
    index = instantiate(cfg.dataset.index)
    prep = Preprocessing.from_config(cfg.preprocessing)
    cache_dir = tmp_path / "cache"
    clean = build_features(index, prep, str(cache_dir))
    before = _entries(cache_dir)
    cache = FlowCache(cache_dir)
    paths = [cache.path(clip_cache_key(c, prep, clip_inputs(c))) for c in list(index)[:6]]
    paths[0].write_bytes(paths[0].read_bytes()[:100])  # torn: cut short
    blob = bytearray(paths[1].read_bytes())
    blob[200] ^= 0x01  # one flipped bit inside the float data: shape and dtype still fine
    paths[1].write_bytes(bytes(blob))
    paths[2].write_bytes(os.urandom(len(blob)))  # garbage of the right length
    np.save(paths[3], compute_clip_maps(index[3], prep))  # a bare .npy without checksum
    assert np.load(paths[3]).shape == (3, 28, 28)  # ... which numpy reads without complaint
    # An intact entry of another clip, copied onto clip 4's key: its checksum binds its key.
    paths[4].write_bytes(paths[5].read_bytes())

    report = fill_cache(index, prep, str(cache_dir))
    assert (report.damaged, report.computed, report.cached) == (5, 5, len(index) - 5)
    again = build_features(index, prep, str(cache_dir))
    assert np.array_equal(again.numpy(), clean.numpy())
    assert _entries(cache_dir) == before


def test_entries_stay_readable_by_plain_numpy(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    path = FlowCache(tmp_path).save("ab" * 32, arr)
    np.testing.assert_array_equal(np.load(path), arr)


def test_stale_temporary_files_are_removed_but_fresh_ones_kept(tmp_path):
    cache = FlowCache(tmp_path)
    cache.save("ab" * 32, np.zeros((3, 2, 2), np.float32))
    old, fresh = tmp_path / "ab" / ".abababab.x1.tmp", tmp_path / "ab" / ".abababab.x2.tmp"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert cache.remove_stale_temporaries(older_than_s=600) == 1
    assert not old.exists() and fresh.exists() and cache.path("ab" * 32).exists()


def test_mefnet_cache_prints_its_summary_and_matches_mefnet_train_keys(tmp_path):
    overrides = [*TINY_SYNTHETIC, "paths.data_dir=data", "preprocessing.size=32"]
    proc = _cli(*overrides, cwd=tmp_path)  # relative paths: resolved from the start folder
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    s = _summary(out)
    assert (s["clips"], s["already cached"], s["computed"], s["failed"]) == ("18", "0", "18", "0"), out
    assert "pairs/s" in s["time"] and s["cache"] == str(tmp_path / "data" / "cache")
    listed = Path(s["clip list (onset, apex, apex_source, cache key, status)"])
    rows = list(csv.DictReader(listed.open()))
    assert len(rows) == 18 and {r["status"] for r in rows} == {"computed"}
    assert {"onset", "apex", "apex_source", "cache_key"} <= set(rows[0])
    assert listed.parent.parent == tmp_path / "data" / "cache" / "runs"

    # What mefnet-train composes from the same overrides finds every entry cached.
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = compose(overrides)
        index = instantiate(cfg.dataset.index)
        report = fill_cache(index, Preprocessing.from_config(cfg.preprocessing), cfg.preprocessing.cache_dir)
    finally:
        os.chdir(cwd)
    assert (report.cached, report.computed) == (18, 0)
    assert report.keys == [r["cache_key"] for r in rows]

    rerun = _cli(*overrides, cwd=tmp_path)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert (_summary(out)["already cached"], _summary(out)["computed"]) == ("18", "0")


def test_mefnet_cache_reports_failed_clips_with_reasons_and_exit_status(tmp_path):
    overrides = [*TINY_SYNTHETIC, f"paths.data_dir={tmp_path / 'data'}"]
    index = instantiate(compose(overrides).dataset.index)
    bad = index[5]
    frames = sorted(Path(bad.frame_dir).iterdir())
    (Path(bad.frame_dir) / next(f.name for f in frames if f.stem.endswith(str(bad.apex)))).write_bytes(b"")
    proc = _cli(*overrides, cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err[-2000:]
    s = _summary(out)
    assert (s["computed"], s["failed"]) == ("17", "1"), out
    assert f"  {bad.clip_key}: DatasetError: cannot read image" in out


# ------------------------------------------------------------- face per source dataset


def _two_dataset_index(tmp_path: Path) -> ClipIndex:
    index = instantiate(compose([*TINY_SYNTHETIC, f"paths.data_dir={tmp_path / 'data'}"]).dataset.index)
    clips = [replace(c, dataset="casme2" if i % 2 else "samm") for i, c in enumerate(index)]
    return ClipIndex(clips, index.class_names, "composite")


def test_the_face_method_is_chosen_per_source_dataset_and_keys_the_cache(tmp_path, monkeypatch):
    index = _two_dataset_index(tmp_path)
    mixed = Preprocessing.from_config({"face": {"casme2": "none", "samm": "haar"}})
    none, haar = Preprocessing.from_config({"face": "none"}), Preprocessing.from_config({"face": "haar"})
    for clip in index:
        files = clip_inputs(clip)
        same_as = none if clip.dataset == "casme2" else haar
        assert clip_cache_key(clip, mixed, files) == clip_cache_key(clip, same_as, files)
        other = haar if clip.dataset == "casme2" else none
        assert clip_cache_key(clip, mixed, files) != clip_cache_key(clip, other, files)
    # The cropper runs for the SAMM clips only.
    from mefnet.preprocessing.face import FaceCropper, FaceNotFoundError

    cropped = []

    def fake_crop(self, onset, apex, clip_key=""):
        cropped.append((clip_key, self.method))
        raise FaceNotFoundError(f"clip {clip_key}: no face (test)")

    monkeypatch.setattr(FaceCropper, "crop_pair", fake_crop)
    report = fill_cache(index, mixed, str(tmp_path / "cache"), on_error="skip")
    samm = {c.clip_key for c in index if c.dataset == "samm"}
    assert sorted(cropped) == sorted((key, "haar") for key in samm)
    assert {clip for clip, _ in report.failed} == samm
    assert all(reason.startswith("FaceNotFoundError: clip samm/") for _, reason in report.failed)
    assert report.computed == len(index) - len(samm) == 9
    with pytest.raises(DatasetError, match=r"input maps could not be made for 9 of 18 clips"):
        build_features(index, mixed, str(tmp_path / "cache"))


def test_a_dataset_missing_from_the_face_mapping_is_named(tmp_path):
    index = _two_dataset_index(tmp_path)
    prep = Preprocessing.from_config({"face": {"casme2": "none"}})
    with pytest.raises(DatasetError, match=r"no face method for dataset 'samm'.*preprocessing.face.samm"):
        clip_cache_key(index[0], prep, clip_inputs(index[0]))
    with_default = Preprocessing.from_config({"face": {"casme2": "none", "default": "haar"}})
    assert with_default.face_method("samm") == "haar"
    with pytest.raises(ValueError, match=r"preprocessing.face.samm: 'dlib' is not one of"):
        Preprocessing.from_config({"face": {"samm": "dlib"}})


def test_the_megc2019_config_crops_samm_only():
    prep = Preprocessing.from_config(compose(["dataset=megc2019"]).preprocessing)
    assert [prep.face_method(d) for d in ("casme2", "smic", "samm")] == ["none", "none", "landmarks"]
