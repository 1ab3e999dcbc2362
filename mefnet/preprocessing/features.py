"""From a clip index to the network's input tensor: frames -> face -> flow -> maps, cached.

``build_features`` is what data modules call (in ``prepare_data``): it computes every
clip's maps once, stores them in the flow cache, and returns them as one in-memory
tensor so that training never touches the disk again. ``fill_cache`` is the filling
step alone (what ``mefnet-cache`` runs): parallel workers, an optional progress bar,
and a :class:`FillReport` of what it found and did.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mefnet import schema
from mefnet.datasets.clip_index import Clip, ClipIndex, DatasetError, frame_path, list_frames
from mefnet.datasets.flow_folder import read_flow_map
from mefnet.preprocessing.cache import FlowCache, cache_key
from mefnet.preprocessing.face import FaceCropper
from mefnet.preprocessing.flow import (
    FlowParams,
    compute_flow,
    flow_maps,
    normalize_maps,
)
from mefnet.utils.testing_seam import pause_point
from mefnet.utils.workers import WithParent

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FACE_METHODS = ("none", "landmarks", "haar")
#: ``preprocessing.channel_order``: which u / v / strain map goes to input channel 0, 1, 2.
CHANNEL_ORDERS = {"uvs": (0, 1, 2), "svu": (2, 1, 0)}
#: The key of a per-dataset face mapping that applies to datasets it does not name.
FACE_DEFAULT_KEY = "default"


@dataclass(frozen=True)
class Preprocessing:
    """Every choice that shapes a clip's input maps (all of it goes into the cache key).

    ``face`` is one method for every clip, or a mapping from a clip's source dataset
    (``Clip.dataset``) to a method, for composites whose parts differ: the MEGC2019
    composite crops SAMM's raw frames (``landmarks``) but not CASME II's and SMIC's
    already-cropped faces (``none``). A ``default`` entry covers datasets not named.
    ``face_options`` apply to every method other than ``none``.
    """

    size: int = 28
    face: str | Mapping[str, str] = "none"
    face_options: dict = field(default_factory=dict)
    flow: FlowParams = field(default_factory=FlowParams)
    normalize: str = "minmax"
    scale: float = 1.0
    """Every map is multiplied by this after normalization (255 with ``minmax`` gives the
    0..255 values of the public flow PNGs as ``cv2.imread`` returns them)."""
    channel_order: str = "uvs"
    """Order of the maps in the network input: ``uvs`` (u, v, strain; every mefnet model
    expects it) or ``svu`` (strain, v, u: a flow PNG as ``cv2.imread`` returns it, B G R)."""

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | None) -> Preprocessing:
        """From the ``preprocessing`` config block (a mapping; None: the defaults), checked:
        unknown keys, face methods, the schema's ranges, the flow block."""
        values = dict(block or {})
        known = {"size", "face", "face_options", "flow", "normalize", "scale", "channel_order", "cache_dir",
                 "n_jobs"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"preprocessing: unknown key(s) {sorted(unknown)}; expected {sorted(known)}")
        face = values.get("face") or "none"
        if isinstance(face, Mapping):
            face = {str(k): (v or "none") for k, v in face.items()}
            for dataset, method in face.items():
                if method not in FACE_METHODS:
                    raise ValueError(
                        f"preprocessing.face.{dataset}: '{method}' is not one of {FACE_METHODS}"
                    )
        elif face not in FACE_METHODS:
            raise ValueError(
                f"preprocessing.face: '{face}' is not one of {FACE_METHODS} "
                "(or a mapping dataset -> method)"
            )
        # The same checks as mefnet-train's schema, for the commands that build features
        # without it (mefnet-cache, mefnet-predict).
        checked = schema.Preprocessing(size=values.get("size", 28), normalize=values.get("normalize", "minmax"),
                                       n_jobs=values.get("n_jobs", 1), scale=values.get("scale", 1.0))
        size, normalize, scale = checked.size, checked.normalize, checked.scale
        order = values.get("channel_order", "uvs")
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"preprocessing.channel_order: '{order}' is not one of {list(CHANNEL_ORDERS)}")
        prep = cls(
            size=size,
            face=face,
            face_options=dict(values.get("face_options") or {}),
            flow=FlowParams.from_config(values.get("flow")),
            normalize=normalize,
            scale=float(scale),
            channel_order=order,
        )
        for method in prep.face_methods():  # bad face_options fail here, not mid-fill
            prep._cropper(method)
        return prep

    def face_methods(self) -> list[str]:
        """Every face method this configuration can use."""
        methods = self.face.values() if isinstance(self.face, Mapping) else [self.face]
        return sorted(set(methods))

    def face_method(self, dataset: str | None = None) -> str:
        """The face method of clips from ``dataset``."""
        if not isinstance(self.face, Mapping):
            return self.face
        if dataset in self.face:
            return self.face[dataset]
        if FACE_DEFAULT_KEY in self.face:
            return self.face[FACE_DEFAULT_KEY]
        raise DatasetError(
            f"preprocessing.face names no face method for dataset '{dataset}' (it has "
            f"{', '.join(sorted(self.face))}); add preprocessing.face.{dataset}=none|landmarks|haar "
            f"or a '{FACE_DEFAULT_KEY}' entry"
        )

    def _cropper(self, method: str):
        if method == "none":
            return None

        return FaceCropper(method=method, **self.face_options)

    def face_cropper(self, dataset: str | None = None):
        """The face cropper for clips of ``dataset`` (None for method ``none``)."""
        return self._cropper(self.face_method(dataset))

    def describe(self, dataset: str | None = None) -> dict:
        """What the maps of a clip from ``dataset`` depend on (its cache-key parameters).

        With a per-dataset ``face`` mapping and no ``dataset``, every dataset's face
        description is listed.
        """
        if dataset is None and isinstance(self.face, Mapping):
            face: Any = {name: self._describe_face(m) for name, m in sorted(self.face.items())}
        else:
            face = self._describe_face(self.face_method(dataset))
        out = {"size": self.size, "face": face, "flow": self.flow.describe(), "normalize": self.normalize}
        # Only when not the default, so maps cached before these keys existed stay valid.
        if self.scale != 1.0:
            out["scale"] = self.scale
        if self.channel_order != "uvs":
            out["channel_order"] = self.channel_order
        return out

    def finish(self, maps: np.ndarray) -> np.ndarray:
        """Normalization, scale and channel order of a ``(3, H, W)`` u / v / strain stack:
        the last step from flow maps to the network input (training and prediction)."""
        out = normalize_maps(maps, self.normalize)
        if self.scale != 1.0:
            out = out * np.float32(self.scale)
        return np.ascontiguousarray(out[list(CHANNEL_ORDERS[self.channel_order])], dtype=np.float32)

    def _describe_face(self, method: str) -> Any:
        # The cropper's own description carries its algorithm version, so a change to the
        # crop code invalidates cached maps.
        cropper = self._cropper(method)
        return cropper.describe() if cropper else "none"


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
        maps = read_flow_map(files[0])
        if maps.shape[1:] != (prep.size, prep.size):
            maps = np.stack([cv2.resize(m, (prep.size, prep.size), interpolation=cv2.INTER_AREA) for m in maps])
        return prep.finish(maps)
    if clip.onset == clip.apex:
        raise DatasetError(f"clip {clip.clip_key}: onset and apex are the same frame ({clip.onset}); no motion to measure")
    return pair_maps(read_image(files[0]), read_image(files[1]), prep, clip.clip_key, clip.dataset).maps


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


def pair_maps(onset: np.ndarray, apex: np.ndarray, prep: Preprocessing, clip_key: str = "",
              dataset: str | None = None) -> PairMaps:
    """Face crop, flow, strain, resize and normalization of one onset/apex pair.

    The one path from frames to input maps: training (through :func:`compute_clip_maps`)
    and ``mefnet-predict`` both use it, so a model sees at prediction time exactly what
    it saw in training. ``dataset`` picks the face crop of that source dataset when the
    face setting is per dataset (a composite).
    """
    cropper = prep.face_cropper(dataset)
    if cropper is not None:
        onset, apex = cropper.crop_pair(onset, apex, clip_key)
    try:
        flow = compute_flow(onset, apex, prep.flow)
    except cv2.error as e:  # e.g. DIS on frames smaller than its patches: a bad clip, not a crash
        reason = str(e).strip().splitlines()[-1]
        raise DatasetError(
            f"{clip_key}: optical flow cannot be computed on {onset.shape[1]}x{onset.shape[0]}-pixel frames "
            f"(OpenCV: {reason}); expected larger frames of a face"
        ) from None
    return PairMaps(onset, apex, flow, prep.finish(flow_maps(flow, prep.size)))


def clip_cache_key(clip: Clip, prep: Preprocessing, files: list) -> str:
    """The cache key of one clip's input maps: the clip, its source files and the preprocessing."""
    identity = {"clip": clip.clip_key, "onset": clip.onset, "apex": clip.apex, "flow_path": clip.flow_path}
    return cache_key(identity, files, prep.describe(clip.dataset))


# ----------------------------------------------------------------------------- filling


@dataclass
class FillReport:
    """What one cache fill found and did. ``status[i]`` is clip i's outcome:
    ``cached`` (an intact entry was there), ``computed``, or ``failed``."""

    cache_dir: str
    total: int = 0
    cached: int = 0
    computed: int = 0
    damaged: int = 0
    """Entries found damaged (removed and recomputed; counted in ``computed`` too)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(clip key, reason) of every clip whose maps could not be made."""
    seconds: float = 0.0
    """Wall time of the whole fill."""
    compute_seconds: float = 0.0
    """Wall time spent computing missing entries (workers' start-up included)."""
    n_jobs: int = 1
    keys: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def pairs_per_second(self) -> float:
        """Computed clip pairs per second of compute time (0 when nothing was computed)."""
        return self.computed / self.compute_seconds if self.computed and self.compute_seconds > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"clips: {self.total}",
            f"already cached: {self.cached}",
            f"computed: {self.computed}"
            + (f" ({self.damaged} of them replacing damaged entries)" if self.damaged else ""),
            f"failed: {len(self.failed)}",
        ]
        out += [f"  {clip}: {reason}" for clip, reason in self.failed]
        rate = (
            f" ({self.compute_seconds:.1f} s computing: {self.pairs_per_second:.1f} pairs/s "
            f"with {self.n_jobs} worker{'s' if self.n_jobs > 1 else ''})"
            if self.computed else ""
        )
        out.append(f"time: {self.seconds:.1f} s{rate}")
        out.append(f"cache: {self.cache_dir}")
        return out


def _set_cv_threads(n: int) -> int:
    old = cv2.getNumThreads()
    cv2.setNumThreads(n)
    return old


def _compute_entry(i: int, clip: Clip, prep: Preprocessing, cache_root: str, key: str, files: list) -> tuple[int, str, str]:
    """Make and store one entry; ``(i, status, reason)``."""
    cache = FlowCache(cache_root)
    shape = (3, prep.size, prep.size)
    try:
        if cache.load(key, shape) is not None:  # another process filled it meanwhile
            return i, "cached", ""
        cache.save(key, compute_clip_maps(clip, prep, files))
    except Exception as err:  # noqa: BLE001 - reported per clip; the fill goes on
        return i, "failed", f"{type(err).__name__}: {err}"
    pause_point("cache")
    return i, "computed", ""


def _compute_entry_in_worker(*args) -> tuple[int, str, str]:
    """:func:`_compute_entry` in a worker process, with one OpenCV thread: the workers are
    the parallelism, and more threads per worker only contend for the same cores."""
    cv2.setNumThreads(1)
    return _compute_entry(*args)


def fill_cache(
    index: ClipIndex,
    prep: Preprocessing,
    cache_dir: str,
    n_jobs: int = 1,
    progress: bool = False,
    on_error: str = "raise",
) -> FillReport:
    """Compute every clip's maps that the cache lacks (or holds damaged), in ``n_jobs`` processes.

    Resumable and safe to run in several processes at once: entries are checked before
    they are computed and written atomically. ``on_error="raise"`` raises one
    :class:`DatasetError` naming every clip that failed (after the others were cached);
    ``"skip"`` records them in the report.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    start = time.perf_counter()
    cache = FlowCache(cache_dir)
    shape = (3, prep.size, prep.size)
    n = len(index)
    report = FillReport(cache_dir=str(cache_dir), total=n, n_jobs=max(1, int(n_jobs)))
    report.keys, report.status, report.reasons = [""] * n, [""] * n, [""] * n
    todo: list[tuple[int, Clip, str, list]] = []
    for i, clip in enumerate(index):
        try:
            files = clip_inputs(clip)
            key = clip_cache_key(clip, prep, files)
        except (DatasetError, OSError) as err:
            report.status[i], report.reasons[i] = "failed", f"{type(err).__name__}: {err}"
            continue
        report.keys[i] = key
        arr, why = cache.check(key, shape)
        if arr is not None:
            report.status[i] = "cached"
        else:
            report.damaged += why.startswith("damaged")
            todo.append((i, clip, key, files))
    if todo:
        log.info("computing input maps for %d of %d clips (cache: %s)", len(todo), n, cache_dir)
        compute_start = time.perf_counter()
        for i, status, reason in _run(todo, prep, str(cache_dir), report.n_jobs, progress):
            report.status[i], report.reasons[i] = status, reason
        report.compute_seconds = time.perf_counter() - compute_start
    report.cached = report.status.count("cached")
    report.computed = report.status.count("computed")
    report.failed = [(index[i].clip_key, r) for i, (s, r) in enumerate(zip(report.status, report.reasons, strict=True)) if s == "failed"]
    report.seconds = time.perf_counter() - start
    if report.failed and on_error == "raise":
        shown = "\n".join(f"  {c}: {r}" for c, r in report.failed[:20])
        more = f"\n  ... and {len(report.failed) - 20} more" if len(report.failed) > 20 else ""
        raise DatasetError(
            f"input maps could not be made for {len(report.failed)} of {n} clips "
            f"(the other clips are cached in {cache_dir}):\n{shown}{more}"
        )
    return report


class _LogProgress:
    """A progress bar for logs (no terminal): one line every ``every_s`` seconds."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self.total, self.done, self.every_s = total, 0, every_s
        self.start = self.last = time.perf_counter()

    def advance(self, _task=None) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            left = (now - self.start) / self.done * (self.total - self.done)
            log.info("input maps: %d/%d clips (%d%%), about %.0f s left", self.done, self.total,
                     100 * self.done // self.total, left)

    def stop(self) -> None:
        pass


def _run(todo: list, prep: Preprocessing, cache_root: str, n_jobs: int, progress: bool | str):
    """Yield ``(i, status, reason)`` per entry as it finishes, optionally under a progress bar
    (``progress="auto"``: a bar on a terminal, else a log line every 10 s)."""
    bar = task = None
    if progress == "auto":
        progress = sys.stderr.isatty()
        if not progress:
            bar = _LogProgress(len(todo))
    if progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn("flow cache"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True))
        task = bar.add_task("fill", total=len(todo))
        bar.start()
    try:
        if n_jobs > 1 and len(todo) > 1:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                delayed(WithParent(_compute_entry_in_worker))(i, clip, prep, cache_root, key, files)
                for i, clip, key, files in todo
            )
            for result in results:
                if bar is not None:
                    bar.advance(task)
                yield result
        else:
            old = _set_cv_threads(1)
            try:
                for i, clip, key, files in todo:
                    result = _compute_entry(i, clip, prep, cache_root, key, files)
                    if bar is not None:
                        bar.advance(task)
                    yield result
            finally:
                cv2.setNumThreads(old)
    finally:
        if bar is not None:
            bar.stop()


def build_features(
    index: ClipIndex, prep: Preprocessing, cache_dir: str, n_jobs: int = 1, progress: bool | str = "auto"
) -> torch.Tensor:
    """All clips' maps as one ``(N, 3, size, size)`` float tensor, in index order.

    Missing or damaged cache entries are computed (in ``n_jobs`` processes when > 1) and
    stored before the tensor is assembled, so a second call reads only the cache.
    """
    import torch  # here, not at the top: cache-filling workers import this module

    start = time.perf_counter()
    report = fill_cache(index, prep, cache_dir, n_jobs=n_jobs, progress=progress)
    cache = FlowCache(cache_dir)
    shape = (3, prep.size, prep.size)
    out = np.empty((len(index), *shape), np.float32)
    for i, (clip, key) in enumerate(zip(index, report.keys, strict=True)):
        arr = cache.load(key, shape)
        if arr is None:  # damaged or removed between fill and read: recompute here
            _, status, reason = _compute_entry(i, clip, prep, str(cache_dir), key, clip_inputs(clip))
            arr = cache.load(key, shape)
            if arr is None:
                raise DatasetError(f"clip {clip.clip_key}: input maps could not be stored in {cache_dir} ({reason or status})")
        out[i] = arr
    log.info("input maps for %d clips ready in %.1f s", len(index), time.perf_counter() - start)
    return torch.from_numpy(out)
