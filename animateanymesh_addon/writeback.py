"""Write-back math, free of Blender: frames -> shape-key keyframes, timeline mapping, PC2 files.

The backend hands back trajectories (T, N, 3) already in the object's own vertex order (welded
and triangulated vertices mapped back). What is left is Blender-independent:

* checking the frames fit the object (same vertex count, finite), splitting a joint result
  of several objects, mapping world-space results back into each object's own space, and
  optionally anchoring them so the first frame is the artist's mesh exactly;
* mapping model frame i onto timeline time `frame_start + i * frame_step`;
* the keyframes of "one relative shape key per frame": key i is 1 at its own time and 0 at its
  neighbours' times, with linear (or constant) interpolation. At time t between samples i and
  i+1 exactly keys i and i+1 are on, with weights summing to 1, so the mesh is
  basis + sum w_k (P_k - basis) = (1 - a) P_i + a P_{i+1}: a blend of neighbouring frames and
  never a pop. Outside the range the first / last key stays on (the pose is held);
* the PC2 point-cache format that Blender's Mesh Cache modifier reads.

Kept pure so it is tested in milliseconds and shared by the Blender writer and the exporters.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .seam import ErrorCode, atomic

INTERPOLATIONS = ("LINEAR", "CONSTANT")

PC2_MAGIC = b"POINTCACHE2\0"
PC2_VERSION = 1
# magic[12], int32 version, int32 num_points, float32 start_frame, float32 sample_rate,
# int32 num_samples; everything little-endian, then float32 xyz per point per sample.
_PC2_HEADER = struct.Struct("<12siiffi")
PC2_HEADER_SIZE = _PC2_HEADER.size  # 32 bytes


class WritebackError(ValueError):
    """Input the write-back cannot use; the message names the problem and the fix."""

    code = ErrorCode.WRITEBACK


# ------------------------------------------------------------------------------ frames

def as_frames(frames, num_vertices: int | None = None) -> np.ndarray:
    """Validate trajectories and return them as C-contiguous float32 (T, N, 3).

    `num_vertices` is the object's vertex count; a mismatch means the mesh was edited (or another
    object picked) after the animation was computed, which only re-animating can fix.
    """
    try:
        arr = np.asarray(frames, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise WritebackError(f"frames must be a numeric (T, N, 3) array: {exc}") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise WritebackError(
            f"frames must have shape (T, N, 3) (frames, vertices, xyz), got {arr.shape}.")
    if arr.shape[0] < 1:
        raise WritebackError("frames holds no frame (T = 0); the backend result is empty. "
                             "Fix: animate again.")
    if num_vertices is not None and arr.shape[1] != int(num_vertices):
        raise WritebackError(
            f"the animation has {arr.shape[1]} vertices but the object has {int(num_vertices)}: "
            "the mesh changed after it was animated. Fix: animate the object again.")
    if not np.isfinite(arr).all():
        raise WritebackError("frames contain NaN or infinite positions. Fix: animate again, "
                             "with another seed or fp32 precision.")
    return np.ascontiguousarray(arr)


def anchor_to_rest(frames, rest) -> np.ndarray:
    """Shift each vertex's trajectory so frame 0 is exactly the rest position.

    The model reconstructs frame 0 only approximately; keeping the motion (P_t - P_0) and adding
    it to the artist's own coordinates keeps every modelled detail and starts from the mesh as
    it was, with no jump from the rest pose to frame 0.
    """
    f = as_frames(frames)
    r = np.asarray(rest, dtype=np.float64)
    if r.shape != f.shape[1:]:
        raise WritebackError(f"rest coordinates must have shape {f.shape[1:]}, got {r.shape}.")
    out = f.astype(np.float64) - f[:1].astype(np.float64) + r[None]
    return np.ascontiguousarray(out, dtype=np.float32)


def split_frames(frames, counts) -> list[np.ndarray]:
    """Split frames of several objects animated together (their vertices concatenated in the
    request) into one (T, n_i, 3) array per object."""
    f = as_frames(frames)
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts) or sum(counts) != f.shape[1]:
        raise WritebackError(f"the objects have {sum(counts)} vertices in all ({counts}) but the "
                             f"animation has {f.shape[1]}. Fix: animate the objects again.")
    bounds = np.cumsum([0] + counts)
    return [np.ascontiguousarray(f[:, bounds[i]:bounds[i + 1]]) for i in range(len(counts))]


def closed_loop(frames) -> np.ndarray:
    """A loop of period P (P frames: frame P would be frame 0 again) as P + 1 frames that end on
    the first. Any player or exporter then interpolates the wrap like every other step, whatever
    the frame step, and a timeline that plays the period and wraps shows no seam."""
    f = as_frames(frames)
    return np.ascontiguousarray(np.concatenate([f, f[:1]]))


def loop_scene_range(frame_start: float, frame_end: float) -> tuple[int, int]:
    """The scene frames of one period of a closed loop whose first frame plays at `frame_start`
    and whose closing frame (the first again) at `frame_end`: the closing frame is left out, as
    the timeline wraps back to the start there."""
    start = math.floor(frame_start)
    return start, max(start, math.ceil(frame_end) - 1)


def _matrix(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise WritebackError(f"a 4x4 finite transform matrix is needed, got shape {m.shape}.")
    return m


def to_world_space(coords, matrix_world) -> np.ndarray:
    """Object-space points (..., 3) -> world space, e.g. to animate several objects as one scene."""
    m = _matrix(matrix_world)
    c = np.asarray(coords, dtype=np.float64)
    return (c @ m[:3, :3].T + m[:3, 3]).astype(np.float32)


def to_object_space(coords_world, matrix_world) -> np.ndarray:
    """World-space points (..., 3) -> the object's own space (what shape keys and PC2 store)."""
    m = _matrix(matrix_world)
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise WritebackError("the object's transform is degenerate (a zero scale), so world "
                             "positions cannot be mapped back to it. Fix: give it a non-zero scale.")
    inv = np.linalg.inv(m)
    c = np.asarray(coords_world, dtype=np.float64)
    return (c @ inv[:3, :3].T + inv[:3, 3]).astype(np.float32)


# ------------------------------------------------------------------------------ timeline

@dataclass(frozen=True)
class Timeline:
    """Where model frames land on the scene timeline: frame i plays at start + i * step.

    A step of 1 puts one model frame on each scene frame; `frame_step_for_fps` gives the step
    that plays the clip at a chosen rate inside the scene's frame rate.
    """

    frame_start: float = 1.0
    frame_step: float = 1.0

    def __post_init__(self):
        if not math.isfinite(self.frame_start):
            raise WritebackError(f"frame_start must be a finite number, got {self.frame_start}.")
        if not (math.isfinite(self.frame_step) and self.frame_step > 0):
            raise WritebackError(
                f"frame_step must be a positive number of scene frames per model frame, got "
                f"{self.frame_step}. Fix: use 1 to play one model frame per scene frame.")

    def times(self, num_frames: int) -> np.ndarray:
        """Timeline time of each model frame, (T,) float64."""
        return self.frame_start + self.frame_step * np.arange(int(num_frames), dtype=np.float64)

    def frame_end(self, num_frames: int) -> float:
        return self.frame_start + self.frame_step * (int(num_frames) - 1)

    def scene_range(self, num_frames: int) -> tuple[int, int]:
        """Smallest whole-frame range that shows the whole animation."""
        return math.floor(self.frame_start), math.ceil(self.frame_end(num_frames))


def frames_for_seconds(seconds: float, scene_fps: float, frame_step: float = 1.0) -> int:
    """Model frames that make a clip last `seconds` at the scene's rate, one model frame every
    `frame_step` scene frames (a clip of F frames spans F - 1 steps)."""
    if not (math.isfinite(seconds) and seconds > 0 and scene_fps > 0 and frame_step > 0):
        raise WritebackError(f"a clip length of {seconds} s at {scene_fps} fps cannot be played. "
                             "Fix: give a positive length.")
    return max(2, round(seconds * scene_fps / frame_step) + 1)


def frame_step_for_fps(scene_fps: float, animation_fps: float) -> float:
    """Scene frames per model frame so the clip plays at `animation_fps` in a `scene_fps` scene."""
    for name, value in (("scene_fps", scene_fps), ("animation_fps", animation_fps)):
        if not (math.isfinite(value) and value > 0):
            raise WritebackError(f"{name} must be a positive frame rate, got {value}.")
    return float(scene_fps) / float(animation_fps)


# ------------------------------------------------------------------------------ shape keys

def _check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise WritebackError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    return interpolation


def shape_key_keyframes(num_frames: int, timeline: Timeline) -> list[np.ndarray]:
    """Keyframes of each per-frame shape key: a list of T arrays (K_i, 2) of (time, value).

    Key i: (t_{i-1}, 0), (t_i, 1), (t_{i+1}, 0), without the neighbours that do not exist. With
    constant extrapolation the first key stays 1 before the start and the last key after the
    end, so the clip's first and last poses are held instead of snapping back to the rest pose.
    """
    t = int(num_frames)
    if t < 1:
        raise WritebackError("an animation needs at least one frame.")
    times = timeline.times(t)
    out = []
    for i in range(t):
        lo, hi = max(i - 1, 0), min(i + 1, t - 1)
        rows = np.zeros((hi - lo + 1, 2), dtype=np.float32)
        rows[:, 0] = times[lo:hi + 1]
        rows[i - lo, 1] = 1.0
        out.append(rows)
    return out


def key_weights_at(time: float, num_frames: int, timeline: Timeline,
                   interpolation: str = "LINEAR") -> np.ndarray:
    """Value each per-frame key takes at timeline `time` (what Blender's F-curves evaluate to)."""
    _check_interpolation(interpolation)
    t = int(num_frames)
    w = np.zeros(t, dtype=np.float64)
    u = min(max((float(time) - timeline.frame_start) / timeline.frame_step, 0.0), t - 1.0)
    i = int(math.floor(u))
    a = u - i
    if interpolation == "CONSTANT" or a == 0.0:
        w[i] = 1.0
    else:
        w[i], w[i + 1] = 1.0 - a, a
    return w


def positions_at(frames, time: float, timeline: Timeline, interpolation: str = "LINEAR") -> np.ndarray:
    """Mesh positions (N, 3) the per-frame keys produce at `time`; the weights sum to 1, so the
    basis cancels and this is the blend of the neighbouring frames."""
    f = as_frames(frames)
    w = key_weights_at(time, f.shape[0], timeline, interpolation)
    on = np.nonzero(w)[0]
    return np.einsum("k,knc->nc", w[on], f[on].astype(np.float64)).astype(np.float32)


def shape_key_names(prefix: str, num_frames: int) -> list[str]:
    """Names of our keys, zero-padded so they sort in frame order in Blender's list."""
    if not prefix or '"' in prefix or "\\" in prefix:
        raise WritebackError(f"shape-key prefix {prefix!r} must be non-empty without quotes or "
                             "backslashes (it becomes part of an animation data path).")
    width = max(3, len(str(int(num_frames) - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(int(num_frames))]


def is_our_key_name(name: str, prefix: str) -> bool:
    head, sep, tail = name.rpartition("_")
    return bool(sep) and head == prefix and tail.isdigit() and len(tail) >= 3


# ------------------------------------------------------------------------------ point cache

@dataclass(frozen=True)
class Pc2Header:
    num_points: int
    start_frame: float
    sample_rate: float
    num_samples: int
    version: int = PC2_VERSION


def mesh_cache_settings(timeline: Timeline) -> dict:
    """Mesh Cache modifier settings (play mode Scene, time mode Frame) that play sample i at
    timeline time start + i * step.

    Measured in Blender 5.0: the modifier reads sample `scene_frame * frame_scale - frame_start`
    (its frame_start is in samples, after scaling) and ignores the PC2 header's start and rate
    in this mode, so sample (f - start) / step needs frame_start = start / step.
    """
    scale = 1.0 / float(timeline.frame_step)
    return {"frame_start": float(timeline.frame_start) * scale, "frame_scale": scale}


def write_pc2(path, frames, *, start_frame: float = 0.0, sample_rate: float = 1.0) -> Path:
    """Write (T, N, 3) frames as a PC2 file; returns the path.

    The file is written next to its final name and renamed into place, so a Mesh Cache modifier
    reading the old file never sees a half-written one.
    """
    f = as_frames(frames)
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise WritebackError(f"PC2 sample_rate must be positive, got {sample_rate}.")
    path = Path(path)
    if not path.parent.is_dir():
        raise WritebackError(f"the folder {path.parent} does not exist. Fix: create it or pick "
                             "another point-cache folder.")
    header = _PC2_HEADER.pack(PC2_MAGIC, PC2_VERSION, f.shape[1], float(start_frame),
                              float(sample_rate), f.shape[0])
    body = f.astype("<f4", copy=False)

    def write(fh):
        fh.write(header)
        fh.write(memoryview(body).cast("B"))

    return atomic.write_atomically(path, write)


def read_pc2_header(path) -> Pc2Header:
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read(PC2_HEADER_SIZE)
    if len(raw) < PC2_HEADER_SIZE:
        raise WritebackError(f"{path} is too short to be a PC2 file ({len(raw)} bytes).")
    magic, version, num_points, start, rate, num_samples = _PC2_HEADER.unpack(raw)
    if magic != PC2_MAGIC:
        raise WritebackError(f"{path} is not a PC2 point cache (magic {magic!r}).")
    if version != PC2_VERSION or num_points < 0 or num_samples < 0:
        raise WritebackError(f"{path} has an unsupported PC2 header (version {version}, "
                             f"{num_points} points, {num_samples} samples).")
    return Pc2Header(num_points, float(start), float(rate), num_samples, version)


def read_pc2(path) -> tuple[np.ndarray, Pc2Header]:
    """Read a PC2 file -> (frames (T, N, 3) float32, header)."""
    header = read_pc2_header(path)
    expected = PC2_HEADER_SIZE + 12 * header.num_points * header.num_samples
    size = os.path.getsize(path)
    if size != expected:
        raise WritebackError(f"{path} holds {size} bytes but its header announces {expected} "
                             "(truncated or corrupt). Fix: animate the object again.")
    data = np.fromfile(path, dtype="<f4", offset=PC2_HEADER_SIZE)
    frames = data.reshape(header.num_samples, header.num_points, 3).astype(np.float32, copy=False)
    return frames, header


__all__ = [
    "INTERPOLATIONS", "PC2_HEADER_SIZE", "PC2_MAGIC", "Pc2Header", "Timeline", "WritebackError",
    "anchor_to_rest", "as_frames", "frame_step_for_fps", "is_our_key_name", "key_weights_at",
    "mesh_cache_settings", "positions_at", "read_pc2", "read_pc2_header", "shape_key_keyframes",
    "shape_key_names", "split_frames", "to_object_space", "to_world_space", "write_pc2",
]
