"""Retiming a clip to any number of frames with a curve that is continuous in velocity.

The model makes 16 frames; an artist wants a clip of their own length. Linear interpolation
between the samples would put a kink (a jump in velocity) at every original frame, which reads
as a stutter once the clip is slowed down. A cubic Hermite curve through the samples, with
Catmull-Rom tangents (central differences inside, one-sided at the ends), passes through every
original frame and has a continuous first derivative everywhere.
"""

from __future__ import annotations

import numpy as np


def retime(frames: np.ndarray, count: int) -> np.ndarray:
    """(T, N, 3) -> (count, N, 3): the same motion over the same span, sampled `count` times.
    The first and last frames are kept exactly; count == T returns the clip unchanged."""
    frames = np.asarray(frames)
    t = frames.shape[0]
    if count == t or t < 2:
        return np.repeat(frames[:1], count, axis=0) if t < 2 else frames.copy()
    return resample(frames, np.linspace(0.0, t - 1, count))


def resample(frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The clip's Catmull-Rom curve at fractional frame `positions` (0 .. T-1)."""
    frames = np.asarray(frames)
    t = frames.shape[0]
    f = frames.astype(np.float64)
    tangents = np.empty_like(f)
    tangents[1:-1] = 0.5 * (f[2:] - f[:-2])
    tangents[0] = f[1] - f[0]
    tangents[-1] = f[-1] - f[-2]
    position = np.clip(np.asarray(positions, dtype=np.float64), 0.0, t - 1)
    segment = np.minimum(position.astype(np.int64), t - 2)
    out = _hermite(f, tangents, segment, segment + 1, position - segment)
    return out.astype(frames.dtype if frames.dtype.kind == "f" else np.float32)


def _hermite(f, tangents, start, end, fraction) -> np.ndarray:
    """Cubic Hermite between frames `start` and `end` at `fraction` (0..1) of the way."""
    s = np.asarray(fraction, dtype=np.float64)[:, None, None]
    s2, s3 = s * s, s * s * s
    h00, h10 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s
    h01, h11 = -2 * s3 + 3 * s2, s3 - s2
    return h00 * f[start] + h10 * tangents[start] + h01 * f[end] + h11 * tangents[end]


def retime_loop(frames: np.ndarray, count: int) -> np.ndarray:
    """A loop of period T (frame T is frame 0 again) -> `count` frames over the same period, with
    the tangents taken across the wrap, so the retimed loop is seamless too."""
    frames = np.asarray(frames)
    t = frames.shape[0]
    if count == t or t < 2:
        return np.repeat(frames[:1], count, axis=0) if t < 2 else frames.copy()
    f = frames.astype(np.float64)
    tangents = 0.5 * (np.roll(f, -1, axis=0) - np.roll(f, 1, axis=0))
    position = np.arange(count) * (t / count)
    segment = np.floor(position).astype(np.int64)
    following = (segment + 1) % t
    return _hermite(f, tangents, segment, following, position - segment).astype(
        frames.dtype if frames.dtype.kind == "f" else np.float32)
