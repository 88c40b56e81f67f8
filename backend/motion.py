"""How much a take moves, and turning that up or down.

Motion is measured from the take's first frame, which is the pose the add-on anchors to the
artist's mesh: scaling it keeps that pose and makes every later frame move more or less.
"""

from __future__ import annotations

import numpy as np

# A take whose farthest-moving vertex travels less than this share of the mesh's size reads as
# standing still: the user is told, with what to try.
WEAK_MOTION = 0.02


def scale_motion(frames: np.ndarray, strength: float, anchor: np.ndarray | None = None) -> np.ndarray:
    """(T, N, 3) with each vertex's displacement from `anchor` (N, 3; default frame 0)
    multiplied by `strength`. The pipeline anchors to the rest pose, which a loop's first frame
    need not be."""
    f = np.asarray(frames, dtype=np.float32)
    base = f[:1] if anchor is None else np.asarray(anchor, dtype=np.float32)[None]
    return base + np.float32(strength) * (f - base)


def peak_motion(frames: np.ndarray) -> float:
    """The largest distance any vertex gets from its frame-0 position, as a share of the
    bounding-box diagonal of frame 0 (0 for a mesh without extent)."""
    f = np.asarray(frames, dtype=np.float64)
    diagonal = float(np.linalg.norm(f[0].max(axis=0) - f[0].min(axis=0))) if f.shape[1] else 0.0
    if diagonal == 0.0:
        return 0.0
    return float(np.sqrt(((f - f[:1]) ** 2).sum(axis=-1)).max()) / diagonal


def weak_take_warning(frames: np.ndarray) -> str | None:
    share = peak_motion(frames)
    if share >= WEAK_MOTION:
        return None
    return (f"the motion is weak: no vertex moves more than {100 * share:.1f}% of the mesh's size. "
            "Try another seed, more guidance, or other words (the verb the model knows, e.g. "
            "\"jumps\" rather than a description of the object); Strength scales it up.")
