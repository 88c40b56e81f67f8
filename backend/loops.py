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

from .joins import match_velocity


@dataclass(frozen=True)
class LoopMethod:
    name: str
    close: Callable[[np.ndarray, int], np.ndarray]   # (joined clip, frames of the clip proper) -> loop
    extra_segments: int


def close_by_blending(clip: np.ndarray, length: int) -> np.ndarray:
    """Remove the drift between the last and the first frame (a straight-line ramp, so every
    frame's velocity changes by the same small amount), then bend the velocities across the wrap
    to their mean. The loop's period is the clip's length minus one: its last frame is its first."""
    x = np.asarray(clip[:length], dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, length)[:, None, None]
    closed = x - ramp * (x[-1] - x[0])
    period = closed[:-1]
    return match_velocity(period, 0, (period.shape[0] - 1) // 2, circular=True).astype(np.float32)


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


LOOPS: dict[str, LoopMethod] = {
    "blend": LoopMethod("blend", close_by_blending, extra_segments=0),
    "crossfade": LoopMethod("crossfade", close_by_crossfade, extra_segments=1),
}
assert set(LOOPS) == set(LOOP_METHODS), "loops.py and limits.LOOP_METHODS must list the same methods"
