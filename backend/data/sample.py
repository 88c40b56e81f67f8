"""The one in-memory training sample every reader produces, and the two ways to fit it to a model.

A `MotionSample` is an animated triangle mesh with fixed topology: `frames[t, i]` is vertex i at
time t, `faces` index into the vertex axis, frame 0 is the pose the animation starts from.

`resample_frames` brings a clip of any length to the T frames a model wants; `apply_vertex_budget`
brings a mesh with too many vertices under a budget by simplifying it, and always returns a note
saying so, because a training run that silently dropped or changed samples cannot be trusted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from backend.data.errors import DatasetError


@dataclass
class MotionSample:
    """An animated mesh with captions.

    frames   (T, N, 3) float32 vertex positions per frame (frame 0 = the starting pose)
    faces    (F, 3) int64 triangles indexing the N vertices (F may be 0: a point cloud)
    captions paraphrases describing the motion (may be empty: usable for the VAE only)
    source   where it came from, e.g. "dymesh:/data/x.bin" or "procedural:seed=1:split=train:i=7"
    family   motion family name for procedural samples, None for real data
    meta     JSON-friendly extras (mesh kind, motion parameters, notes about simplification...)

    The constructor converts dtypes and checks shapes, finiteness and face indices, raising
    DatasetError with the problem and the fix, so a broken sample fails where it is made.
    """

    frames: np.ndarray
    faces: np.ndarray
    captions: list[str]
    source: str
    family: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        frames = np.asarray(self.frames, dtype=np.float32)
        if frames.ndim != 3 or frames.shape[2] != 3 or frames.shape[0] < 1 or frames.shape[1] < 1:
            raise DatasetError(
                f"{self.source}: frames have shape {frames.shape}, expected (T, N, 3) with at "
                "least one frame and one vertex. Fix: store one (N, 3) position array per frame."
            )
        if not np.all(np.isfinite(frames)):
            raise DatasetError(
                f"{self.source}: frames contain NaN or infinite positions. Fix: re-export the "
                "animation (a simulation that exploded or a division by zero in the exporter)."
            )
        faces = np.asarray(self.faces)
        if faces.size == 0:
            faces = np.zeros((0, 3), dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise DatasetError(
                f"{self.source}: faces have shape {faces.shape} and dtype {faces.dtype}, expected "
                "(F, 3) integers. Fix: triangulate the mesh and store vertex indices."
            )
        faces = faces.astype(np.int64, copy=False)
        n = frames.shape[1]
        if faces.size and (faces.min() < 0 or faces.max() >= n):
            raise DatasetError(
                f"{self.source}: face indices span [{faces.min()}, {faces.max()}] but there are "
                f"only {n} vertices. Fix: faces must index the vertex axis of frames (0-based)."
            )
        captions = self.captions
        if isinstance(captions, str):
            captions = [captions]
        captions = list(captions)
        if not all(isinstance(c, str) for c in captions):
            raise DatasetError(f"{self.source}: captions must be strings, got {captions!r}.")
        if not isinstance(self.meta, dict):
            raise DatasetError(f"{self.source}: meta must be a dict, got {type(self.meta).__name__}.")
        self.frames, self.faces, self.captions = frames, faces, captions

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.frames.shape[1])


def resample_frames(frames: np.ndarray, T: int) -> np.ndarray:
    """Bring a clip of any length to exactly T frames by linear interpolation in time.

    The clip's first and last frames map to output frames 0 and T-1 and the output frames are
    evenly spaced in between, so the clip keeps its duration and only its sampling changes
    (a 120-frame clip becomes 16 frames of the same motion, a 4-frame clip is slowed into 16).
    A 1-frame clip has no motion to interpolate: it is repeated T times (a static sample).
    Interpolation runs in float64 and the result is float32.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[2] != 3 or frames.shape[0] < 1:
        raise DatasetError(f"frames have shape {frames.shape}, expected (S, N, 3) with S >= 1.")
    if int(T) != T or T < 1:
        raise DatasetError(f"T={T} is not a positive frame count. Fix: pass T >= 1 (e.g. 16).")
    T = int(T)
    src = frames.shape[0]
    if src == 1:
        return np.repeat(frames.astype(np.float32), T, axis=0)
    if src == T:
        return frames.astype(np.float32, copy=True)
    # position of each output frame on the source frame axis
    pos = np.linspace(0.0, src - 1, T) if T > 1 else np.zeros(1)
    lo = np.minimum(np.floor(pos).astype(np.int64), src - 2)
    w = (pos - lo)[:, None, None]
    f64 = frames.astype(np.float64)
    out = f64[lo] * (1.0 - w) + f64[lo + 1] * w
    return out.astype(np.float32)


def _cluster_labels(rest: np.ndarray, cell: float, offset: np.ndarray) -> tuple[np.ndarray, int]:
    """Grid-cell id of every vertex (compact 0..M-1) and the number M of occupied cells."""
    idx = np.floor((rest - rest.min(axis=0)) / cell + offset).astype(np.int64)
    dims = idx.max(axis=0) + 1
    key = (idx[:, 0] * dims[1] + idx[:, 1]) * dims[2] + idx[:, 2]
    _, labels = np.unique(key, return_inverse=True)
    labels = labels.reshape(-1)
    return labels, int(labels.max()) + 1


def _choose_cell(rest: np.ndarray, budget: int, offset: np.ndarray) -> tuple[float, np.ndarray, int]:
    """Smallest grid cell (by bisection) whose occupied-cell count fits the budget."""
    diag = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))
    if diag == 0.0:  # every vertex at one point: a single cluster
        return 1.0, np.zeros(len(rest), dtype=np.int64), 1
    hi = diag
    labels, m = _cluster_labels(rest, hi, offset)
    while m > budget:
        # a cell as large as the mesh still straddles up to 8 cells when the grid is shifted;
        # growing the cell and finally dropping the shift always ends at one cluster
        hi *= 2.0
        if hi > 64 * diag:
            offset = np.zeros(3)
        labels, m = _cluster_labels(rest, hi, offset)
    best = (hi, labels, m)
    lo = diag * 1e-5  # keeps every per-axis cell index below 1e5 so the int64 key cannot overflow
    lo_labels, lo_m = _cluster_labels(rest, lo, offset)
    if lo_m <= budget:
        return lo, lo_labels, lo_m
    for _ in range(40):
        mid = np.sqrt(lo * hi)
        labels, m = _cluster_labels(rest, mid, offset)
        if m <= budget:
            hi, best = mid, (mid, labels, m)
        else:
            lo = mid
        if hi / lo < 1.0 + 1e-3:
            break
    return best


def apply_vertex_budget(sample: MotionSample, max_vertices: int,
                        rng: np.random.Generator | None = None) -> tuple[MotionSample, str | None]:
    """Fit a sample under `max_vertices` without dropping it; return (sample, note).

    Within budget: the same sample and note None. Over budget: the mesh is simplified by vertex
    clustering on the rest pose (frame 0): space is cut into cubic cells, each occupied cell
    becomes one vertex that follows the mean trajectory of the vertices in it, triangles are
    re-indexed and those that collapse or repeat are removed. The cell is the smallest (found by
    bisection) that fits the budget, so as much detail as possible survives. Averaging
    trajectories keeps the motion (a rigid motion stays rigid up to the averaging).

    `rng` shifts the grid by a random fraction of a cell, so repeated calls give different but
    equally valid simplifications (augmentation); None uses a centred grid (deterministic).
    The note says what happened and is also stored in `meta["vertex_budget_note"]` of the
    returned sample, with `meta["original_vertex_count"]`, so callers can log it.
    """
    if int(max_vertices) != max_vertices or max_vertices < 1:
        raise DatasetError(f"max_vertices={max_vertices} must be a positive integer.")
    n = sample.num_vertices
    if n <= max_vertices:
        return sample, None
    rest = sample.frames[0].astype(np.float64)
    offset = rng.random(3) if rng is not None else np.full(3, 0.5)
    cell, labels, m = _choose_cell(rest, int(max_vertices), offset)

    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    counts = np.diff(np.r_[starts, n])
    t = sample.num_frames
    flat = sample.frames.astype(np.float64).transpose(1, 0, 2).reshape(n, t * 3)
    means = np.add.reduceat(flat[order], starts, axis=0) / counts[:, None]
    frames = means.reshape(m, t, 3).transpose(1, 0, 2).astype(np.float32)

    faces = labels[sample.faces] if len(sample.faces) else np.zeros((0, 3), dtype=np.int64)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    if len(faces):
        _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
        faces = faces[np.sort(first)]  # keep the first copy's winding and the original order
    diag = float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0))) or 1.0
    note = (
        f"{sample.source}: {n} vertices > budget {int(max_vertices)}: simplified to {m} vertices "
        f"and {len(faces)} faces (from {len(sample.faces)}) by vertex clustering on the rest pose "
        f"(cell {cell:.3g} = {cell / diag:.2%} of the bounding-box diagonal; each vertex follows "
        "the mean trajectory of its cell)"
    )
    meta = copy.deepcopy(sample.meta)
    meta.pop("parts", None)  # part vertex ranges no longer match the simplified vertex order
    meta["vertex_budget_note"] = note
    meta["original_vertex_count"] = n
    out = MotionSample(frames=frames, faces=faces, captions=list(sample.captions),
                       source=sample.source, family=sample.family, meta=meta)
    return out, note
