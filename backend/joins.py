"""Joining clips end to start so that neither position nor velocity jumps at the seam.

A chained segment starts from the previous segment's last pose, so positions already meet (up
to the decoder's error, removed by a constant shift). Velocities do not: one take may end
moving while the next starts from rest. `match_velocity` bends the frames on both sides of a
seam so that the frame-to-frame velocity just before and just after it become their mean,
leaving the seam's own position and every frame farther than `window` untouched. The bend is a
Hermite bump, j (1 - j/W)^2, whose slope is 1 at the seam and 0 where it ends, so it adds no
new kink of its own. The same function closes a loop (a circular clip, seam at frame 0).
"""

from __future__ import annotations

import numpy as np


def bump(window: int) -> np.ndarray:
    """(window,) weights for frames 1..window away from a seam; weight 1 next to it."""
    j = np.arange(1, window + 1, dtype=np.float64)
    shape = j * (1.0 - j / (window + 1)) ** 2
    return shape / shape[0]


def match_velocity(clip: np.ndarray, seam: int, window: int, circular: bool = False) -> np.ndarray:
    """(L, N, 3) -> the same clip with equal velocities on both sides of frame `seam`.

    Linear clips shrink the window to the frames that exist on each side; a circular clip (a
    loop whose frame L would be frame 0 again) wraps around.
    """
    x = np.array(clip, dtype=np.float64)
    length = x.shape[0]
    if length < 3:
        return x.astype(np.asarray(clip).dtype)
    if circular:
        window = min(window, (length - 1) // 2)
    else:
        if not 0 < seam < length - 1:
            raise ValueError(f"seam {seam} needs a frame on each side in a clip of {length}")
        window = min(window, seam, length - 1 - seam)
    at = (lambda i: i % length) if circular else (lambda i: i)
    before = x[at(seam)] - x[at(seam - 1)]
    after = x[at(seam + 1)] - x[at(seam)]
    mean = 0.5 * (before + after)
    for j, weight in enumerate(bump(window), start=1):
        x[at(seam + j)] += (mean - after) * weight
        x[at(seam - j)] += (before - mean) * weight
    return x.astype(np.asarray(clip).dtype)


def join_segments(segments: list[np.ndarray], window: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Segments (each (T_i, N, 3), segment i+1 generated from segment i's last pose) -> one clip
    and the index of every seam. Segment i+1 is shifted so its first frame is segment i's last
    (they share that frame), then the velocities are matched across the seam."""
    clip = np.asarray(segments[0])
    seams = []
    for segment in segments[1:]:
        segment = np.asarray(segment)
        shifted = segment + (clip[-1] - segment[0])
        seams.append(clip.shape[0] - 1)
        clip = np.concatenate([clip, shifted[1:]], axis=0)
    shortest = min(np.asarray(s).shape[0] for s in segments)
    half = max(1, (shortest - 1) // 2) if window is None else window
    for seam in seams:
        clip = match_velocity(clip, seam, half)
    return clip, seams


# ----------------------------------------------------------------------------- measurements

def acceleration(clip: np.ndarray) -> np.ndarray:
    """(L-2,) mean over vertices of |x[t+1] - 2 x[t] + x[t-1]|, at frames 1..L-2."""
    x = np.asarray(clip, dtype=np.float64)
    return np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean(axis=-1)


def seam_ratio(clip: np.ndarray, seams: list[int], window: int, circular: bool = False) -> float:
    """The largest velocity change near any seam (within `window` frames, so a bend that only
    moved the jump next door is caught) over the median velocity change away from seams."""
    x = np.asarray(clip, dtype=np.float64)
    if circular:  # unroll: one period, then the start again
        x = np.concatenate([x, x[:window + 2]], axis=0)
        seams = [len(clip)]
    accel = acceleration(x)  # accel[i] belongs to frame i + 1
    near = np.zeros(accel.shape[0], bool)
    for seam in seams:
        near[max(0, seam - window - 1):seam + window] = True
    inside = accel[~near]
    median = float(np.median(inside)) if inside.size else 0.0
    peak = float(accel[near].max()) if near.any() else 0.0
    return peak / median if median > 0 else (0.0 if peak == 0 else float("inf"))


def seam_jump_ratio(clip: np.ndarray, seams: list[int], circular: bool = False) -> float:
    """The velocity change at the seam frames themselves over the median one elsewhere."""
    return seam_ratio(clip, seams, 0, circular)


def centre_drift(segments: list[np.ndarray]) -> list[float]:
    """How far the mesh's centre (vertex mean) moves over each segment, in the clip's units."""
    return [float(np.linalg.norm(np.asarray(s)[-1].mean(0) - np.asarray(s)[0].mean(0))) for s in segments]
