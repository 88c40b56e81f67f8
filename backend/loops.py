"""Making a clip loop: its last frame flows into its first with no jump in position or velocity.

A loop of period P is P frames; frame P would be frame 0 again, so it is not stored and a
player that repeats frames 0..P-1 shows no seam. Each method is one function over the joined
clip; its `extra_segments` says how many more segments (same prompt as the first) the pipeline
generates after the clip for it to use. The names are limits.LOOP_METHODS, so both halves of the
product offer the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from aam_seam.limits import LOOP_METHODS

from .joins import close_velocity
from .retime import resample


@dataclass(frozen=True)
class LoopMethod:
    name: str
    close: Callable[[np.ndarray, int], np.ndarray]   # (joined clip, frames of the clip proper) -> loop
    extra_segments: int


def close_by_blending(clip: np.ndarray, length: int) -> np.ndarray:
    """Remove the drift between the last and the first frame (a straight-line ramp, so every
    frame's velocity changes by the same small amount), then make the velocities on both sides of
    the wrap meet (a parabola, see joins.close_velocity). The loop's period is the clip's length
    minus one: its last frame is its first."""
    x = np.asarray(clip[:length], dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, length)[:, None, None]
    closed = x - ramp * (x[-1] - x[0])
    period = closed[:-1]
    return close_velocity(period).astype(np.float32)


def smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def close_by_crossfade(clip: np.ndarray, length: int) -> np.ndarray:
    """The clip went on for one more segment past `length` frames. The loop's period is the
    clip's length minus one; its first F frames fade from the continuation (frames P..P+F-1,
    which follow frame P-1 naturally) into the clip's own start, with a smoothstep whose slope is
    zero at both ends, so position and velocity are continuous at the wrap and where the fade ends."""
    x = np.asarray(clip, dtype=np.float64)
    period = length - 1
    fade = min((period + 1) // 2, x.shape[0] - period)
    if fade < 2:
        raise ValueError("crossfade needs a continuation of at least 2 frames past the clip")
    out = x[:period].copy()
    weight = smoothstep(np.arange(fade) / fade)[:, None, None]
    out[:fade] = (1.0 - weight) * x[period:period + fade] + weight * x[:fade]
    return out.astype(np.float32)


def best_cut(clip: np.ndarray, shortest: int) -> tuple[int, int]:
    """(start, end) with end - start >= shortest where the clip comes closest to repeating:
    the poses at start and end, and the velocities there, differ least (mean vertex distance,
    velocity weighted by the frames a mismatch would take to cross)."""
    x = np.asarray(clip, dtype=np.float64)
    length = x.shape[0]
    velocity = np.gradient(x, axis=0)
    best, chosen = np.inf, (0, length - 1)
    for start in range(0, length - shortest):
        ends = np.arange(start + shortest, length)
        pose = np.linalg.norm(x[ends] - x[start], axis=-1).mean(axis=-1)
        speed = np.linalg.norm(velocity[ends] - velocity[start], axis=-1).mean(axis=-1)
        cost = pose + 4.0 * speed
        k = int(np.argmin(cost))
        if cost[k] < best:
            best, chosen = float(cost[k]), (start, int(ends[k]))
    return chosen


def close_by_matching(clip: np.ndarray, length: int) -> np.ndarray:
    """The clip went on for one more segment. Find the stretch of at least `length - 1` frames
    whose last pose and velocity best repeat its first (best_cut), close the small remainder as
    `blend` does; the loop starts at the cut. A motion that cycles keeps its full swing; only
    the mismatch is blended."""
    x = np.asarray(clip, dtype=np.float64)
    start, end = best_cut(x, length - 1)
    return close_by_blending(x[start:end + 1], end - start + 1)


def close_by_pingpong(clip: np.ndarray, length: int) -> np.ndarray:
    """Play the clip forward, then backward, with time eased so the motion comes to rest at both
    turns (a smoothstep time map: zero velocity on both sides of each turn, so nothing jumps).
    Keeps the whole swing of a one-way motion (a swell, a lean) that a blend would flatten; the
    period is twice the clip's."""
    x = np.asarray(clip[:length], dtype=np.float64)
    steps = x.shape[0] - 1
    eased = smoothstep(np.arange(steps + 1) / steps) * steps
    forward = resample(x, eased)
    return np.concatenate([forward, forward[-2:0:-1]]).astype(np.float32)


def in_place_range(clip: np.ndarray) -> float:
    """Mean per-vertex range of motion about the mesh's centre (a loop cannot travel)."""
    x = np.asarray(clip, dtype=np.float64)
    return float(np.ptp(x - x.mean(axis=1, keepdims=True), axis=0).mean())


# `auto` blends when that keeps at least this share of the take's swing, else ping-pongs.
KEEP_SWING = 0.7


def close_automatically(clip: np.ndarray, length: int) -> np.ndarray:
    """A take that already cycles loops best by blending (it keeps its rhythm); one that goes one
    way (grows, leans) would lose its swing to the blend and is ping-ponged instead."""
    blended = close_by_blending(clip, length)
    if in_place_range(blended) >= KEEP_SWING * in_place_range(clip[:length]):
        return blended
    return close_by_pingpong(clip, length)


LOOPS: dict[str, LoopMethod] = {
    "blend": LoopMethod("blend", close_by_blending, extra_segments=0),
    "crossfade": LoopMethod("crossfade", close_by_crossfade, extra_segments=1),
    "match": LoopMethod("match", close_by_matching, extra_segments=1),
    "pingpong": LoopMethod("pingpong", close_by_pingpong, extra_segments=0),
    "auto": LoopMethod("auto", close_automatically, extra_segments=0),
}
assert set(LOOPS) == set(LOOP_METHODS), "loops.py and limits.LOOP_METHODS must list the same methods"
