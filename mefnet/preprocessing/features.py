"""From a clip index to the network's input tensor: frames -> face -> flow -> maps, cached.

``build_features`` is what data modules call (in ``prepare_data``): it computes every
clip's maps once, stores them in the flow cache, and returns them as one in-memory
tensor so that training never touches the disk again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError, frame_path, list_frames
from mefnet.preprocessing.cache import FlowCache, cache_key
from mefnet.preprocessing.flow import FlowParams, compute_flow, flow_maps, normalize_maps

log = logging.getLogger(__name__)

FACE_METHODS = ("none", "landmarks", "haar")


@dataclass(frozen=True)
class Preprocessing:
    """Every choice that shapes a clip's input maps (all of it goes into the cache key)."""

    size: int = 28
    face: str = "none"
    face_options: dict = field(default_factory=dict)
    flow: FlowParams = field(default_factory=FlowParams)
    normalize: str = "minmax"

    @classmethod
    def from_config(cls, cfg: Any) -> Preprocessing:
        cfg = dict(cfg or {})
        known = {"size", "face", "face_options", "flow", "normalize", "cache_dir", "n_jobs"}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"preprocessing: unknown key(s) {sorted(unknown)}; expected {sorted(known)}")
        face = cfg.get("face") or "none"
        if face not in FACE_METHODS:
            raise ValueError(f"preprocessing.face: '{face}' is not one of {FACE_METHODS}")
        return cls(
            size=int(cfg.get("size", 28)),
            face=face,
            face_options=dict(cfg.get("face_options") or {}),
            flow=FlowParams.from_config(cfg.get("flow")),
            normalize=cfg.get("normalize", "minmax"),
        )

    def face_cropper(self):
        """The configured face cropper (None for ``face=none``); bad options fail here."""
        if self.face == "none":
            return None
        from mefnet.preprocessing.face import FaceCropper

        return FaceCropper(method=self.face, **self.face_options)

    def describe(self) -> dict:
        cropper = self.face_cropper()
        return {
            "size": self.size,
            # The cropper's own description carries its algorithm version, so a change
            # to the crop code invalidates cached maps.
            "face": cropper.describe() if cropper else "none",
            "flow": self.flow.describe(),
            "normalize": self.normalize,
        }


def read_image(path) -> np.ndarray:
    """A frame as uint8 grey (H, W) or BGR (H, W, 3), with a clear error naming the file."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path} (missing, empty or not an image)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def clip_inputs(clip: Clip) -> list:
    """The files a clip's maps are computed from (onset and apex frames, or its flow file)."""
    if clip.flow_path:
        return [clip.flow_path]
    frames = list_frames(clip.frame_dir)
    return [frame_path(clip, clip.onset, frames), frame_path(clip, clip.apex, frames)]


def compute_clip_maps(clip: Clip, prep: Preprocessing, files: list | None = None) -> np.ndarray:
    """The ``(3, size, size)`` u / v / strain maps of one clip, uncached."""
    files = files or clip_inputs(clip)
    if clip.flow_path:
        from mefnet.datasets.flow_folder import read_flow_map

        maps = read_flow_map(files[0])
        if maps.shape[1:] != (prep.size, prep.size):
            maps = np.stack([cv2.resize(m, (prep.size, prep.size), interpolation=cv2.INTER_AREA) for m in maps])
        return normalize_maps(maps, prep.normalize)
    if clip.onset == clip.apex:
        raise DatasetError(f"clip {clip.clip_key}: onset and apex are the same frame ({clip.onset}); no motion to measure")
    return pair_maps(read_image(files[0]), read_image(files[1]), prep, clip.clip_key).maps


@dataclass(frozen=True)
class PairMaps:
    """Every stage of one onset/apex pair on its way to the network."""

    onset: np.ndarray
    """The onset frame the flow was computed on (face-cropped when ``face`` is set)."""
    apex: np.ndarray
    """The apex frame, cropped with the onset's geometry."""
    flow: np.ndarray
    """``(H, W, 2)`` float32 TV-L1 flow on the cropped frames, in their pixels."""
    maps: np.ndarray
    """``(3, size, size)`` float32 u / v / strain: the network input."""


def pair_maps(onset: np.ndarray, apex: np.ndarray, prep: Preprocessing, clip_key: str = "") -> PairMaps:
    """Face crop, flow, strain, resize and normalization of one onset/apex pair.

    The one path from frames to input maps: training (through :func:`compute_clip_maps`)
    and ``mefnet-predict`` both use it, so a model sees at prediction time exactly what
    it saw in training.
    """
    cropper = prep.face_cropper()
    if cropper is not None:
        onset, apex = cropper.crop_pair(onset, apex, clip_key)
    flow = compute_flow(onset, apex, prep.flow)
    return PairMaps(onset, apex, flow, normalize_maps(flow_maps(flow, prep.size), prep.normalize))


def clip_cache_key(clip: Clip, prep: Preprocessing, files: list) -> str:
    identity = {"clip": clip.clip_key, "onset": clip.onset, "apex": clip.apex, "flow_path": clip.flow_path}
    return cache_key(identity, files, prep.describe())


def _fill_one(clip: Clip, prep: Preprocessing, cache_root: str) -> tuple[str, bool]:
    cache = FlowCache(cache_root)
    files = clip_inputs(clip)
    key = clip_cache_key(clip, prep, files)
    if cache.load(key, (3, prep.size, prep.size)) is not None:
        return key, False
    cache.save(key, compute_clip_maps(clip, prep, files))
    return key, True


def build_features(
    index: ClipIndex, prep: Preprocessing, cache_dir: str, n_jobs: int = 1
) -> torch.Tensor:
    """All clips' maps as one ``(N, 3, size, size)`` float tensor, in index order.

    Missing cache entries are computed (in ``n_jobs`` processes when > 1) and stored
    before the tensor is assembled, so a second call reads only the cache.
    """
    start = time.perf_counter()
    cache = FlowCache(cache_dir)
    shape = (3, prep.size, prep.size)
    keys: list[str | None] = []
    todo: list[int] = []
    for i, clip in enumerate(index):
        key = clip_cache_key(clip, prep, clip_inputs(clip))
        keys.append(key)
        if not cache.path(key).is_file():
            todo.append(i)
    if todo:
        log.info("computing input maps for %d of %d clips (cache: %s)", len(todo), len(index), cache_dir)
        if n_jobs > 1 and len(todo) > 1:
            from joblib import Parallel, delayed

            Parallel(n_jobs=n_jobs)(delayed(_fill_one)(index[i], prep, str(cache_dir)) for i in todo)
        else:
            for i in todo:
                _fill_one(index[i], prep, str(cache_dir))
    out = np.empty((len(index), *shape), np.float32)
    for i, (clip, key) in enumerate(zip(index, keys, strict=True)):
        arr = cache.load(key, shape)
        if arr is None:  # damaged or removed between fill and read: recompute
            _, _ = _fill_one(clip, prep, str(cache_dir))
            arr = cache.load(key, shape)
        out[i] = arr
    log.info("input maps for %d clips ready in %.1f s", len(index), time.perf_counter() - start)
    return torch.from_numpy(out)
