"""Joining clips end to start so that neither position nor velocity jumps at the seam.

A chained segment starts from the previous segment's last pose, so positions already meet (up
to the decoder's error, removed by a constant shift). Velocities do not: one take may end moving
while the next starts from rest. The later segment takes the earlier one's last step as its
first, and the difference dies out evenly over its own length (a velocity ramp, the smallest
added acceleration there is). The earlier segment, which the artist has already seen and whose
first frame is their mesh, is left as it was. Measured on held-out clips
(benchmarks/artist_controls_bench.py), matching the velocity beat matching the acceleration the
frames beside the seam would predict: extrapolated, that acceleration overshoots where a take
lands or brakes hard.

A loop has no free end and, when the take already cycles, no real jump: there the seam should
change velocity as its neighbours predict (`natural_change`), or a good cycle would be bent. Its
correction is a parabola through both ends of the period (`close_velocity`).
"""

from __future__ import annotations

import numpy as np


def natural_change(x: np.ndarray, seam: int) -> np.ndarray:
    """The velocity change a smooth motion would have at frame `seam`, from the changes at the
    two frames on each side (cubic in time: exact while the acceleration varies quadratically,
    within about 1% for a cycle as short as 12 frames). Indices wrap, so a loop reads across
    its end; a linear clip needs three frames on each side of the seam."""
    def change(i):
        return x[(i + 1) % len(x)] - 2 * x[i % len(x)] + x[(i - 1) % len(x)]

    near = change(seam - 1) + change(seam + 1)
    far = change(seam - 2) + change(seam + 2)
    return (4.0 * near - far) / 6.0


def carry_velocity(segment: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """(L+1, N, 3) starting at the seam -> the same segment whose first step moves by `velocity`
    (N, 3), the difference fading linearly to nothing by its last frame. Frame 0 is kept."""
    x = np.asarray(segment, dtype=np.float64)
    steps = x.shape[0] - 1
    if steps < 1:
        return x
    mismatch = np.asarray(velocity, dtype=np.float64) - (x[1] - x[0])
    fade = 1.0 - np.arange(steps) / steps                       # 1 at the seam .. 1/L at the end
    correction = np.concatenate([[0.0], np.cumsum(fade)])[:, None, None] * mismatch[None]
    return x + correction


def close_velocity(period: np.ndarray) -> np.ndarray:
    """A loop (P, N, 3) whose position already wraps (frame P would equal frame 0) -> the same
    loop whose velocity changes at the wrap like at its neighbours. The correction
    a * j * (P - j) is zero at frames 0 and P and adds the same small acceleration everywhere."""
    x = np.asarray(period, dtype=np.float64)
    p = x.shape[0]
    if p < 6:
        return x
    change_at_wrap = x[1] - 2 * x[0] + x[-1]
    # Extrapolated from a jerky stretch, the natural change can be large; no vertex's change at
    # the wrap is asked to exceed its median change over the loop.
    natural = natural_change(x, 0)
    changes = np.linalg.norm(x - 2 * np.roll(x, 1, axis=0) + np.roll(x, 2, axis=0), axis=-1)
    size = np.linalg.norm(natural, axis=-1)
    limit = np.median(changes, axis=0)
    wanted = natural * np.minimum(1.0, limit / np.maximum(size, 1e-30))[:, None]
    # the correction adds 2a(P-1) at the wrap and -2a beside it: solve for a so that the change
    # at the wrap is `wanted` relative to its neighbours, change + 2a(P-1) = wanted - 2a
    a = (wanted - change_at_wrap) / (2.0 * p)
    j = np.arange(p, dtype=np.float64)[:, None, None]
    return x + a[None] * j * (p - j)


def join_segments(segments: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Segments (each (T_i, N, 3), segment i+1 generated from segment i's last pose) -> one clip
    and the index of every seam. Segment i+1 is shifted so its first frame is segment i's last
    (they share that frame) and carries segment i's last velocity on (see carry_velocity)."""
    clip = np.asarray(segments[0], dtype=np.float64)
    seams = []
    for segment in segments[1:]:
        segment = np.asarray(segment, dtype=np.float64)
        shifted = segment + (clip[-1] - segment[0])
        if clip.shape[0] > 1 and shifted.shape[0] > 1:
            shifted = carry_velocity(shifted, clip[-1] - clip[-2])
        seams.append(clip.shape[0] - 1)
        clip = np.concatenate([clip, shifted[1:]], axis=0)
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
