"""Exact farthest point sampling of 3-D points, pruned by a tree of boxes.

The plain loop (farthest_point_sampling._fps_loop) touches all N points for each of the K picks:
at 200k vertices and K = N/8 that is 5e9 distance updates. But a pick can only lower the
running distance of points nearer to it than their current distance, and after the first few
picks that is a small neighbourhood. So the points are cut into leaves of a median-split tree
(about LEAF points each, kept in order of their index), each leaf with its bounding box and the
largest running distance inside it; a pick updates only the leaves whose box lies nearer to it
than that largest distance.

The picks are the plain loop's, bit for bit: the same float32 arithmetic per distance
((dx² + dy²) + dz² of the same scaled coordinates), the same minimum, and ties to the lowest
index (within a leaf its points keep index order; across leaves the lowest index among the
leaves holding the maximum wins).
"""

from __future__ import annotations

import numpy as np

LEAF = 64


def leaves(points: np.ndarray, leaf: int = LEAF) -> list[np.ndarray]:
    """Index arrays of a median-split tree's leaves (split along the widest axis), each sorted."""
    out, todo = [], [np.arange(len(points))]
    while todo:
        idx = todo.pop()
        if len(idx) <= leaf:
            out.append(np.sort(idx))
            continue
        p = points[idx]
        axis = int(np.argmax(p.max(axis=0) - p.min(axis=0)))
        half = len(idx) // 2
        part = np.argpartition(p[:, axis], half)
        todo += [idx[part[:half]], idx[part[half:]]]
    return out


def _squared(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = a - c
    d *= d
    return d[..., 0] + d[..., 1] + d[..., 2]


def farthest_points(points: np.ndarray, k: int, leaf: int = LEAF) -> np.ndarray:
    """Indices of k rows of `points` (N, 3) float32, greedily farthest, starting at row 0.

    Slots beyond N are -1. Equal to the plain loop's picks (see the module's note).
    """
    x = np.ascontiguousarray(points, dtype=np.float32)
    n = len(x)
    picked = np.full(k, -1, dtype=np.int64)
    if n == 0 or k == 0:
        return picked
    groups = leaves(x, leaf)
    c, m = len(groups), max(len(g) for g in groups)
    index = np.full((c, m), n, dtype=np.int64)           # padding: a row past the end
    for i, g in enumerate(groups):
        index[i, :len(g)] = g
    padded = np.concatenate([x, np.full((1, 3), np.nan, dtype=np.float32)])[index]  # (C, M, 3)
    valid = index < n
    lo = np.where(valid[..., None], padded, np.inf).min(axis=1)
    hi = np.where(valid[..., None], padded, -np.inf).max(axis=1)
    running = np.where(valid, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    best = np.full(c, np.inf, dtype=np.float32)          # largest running distance per leaf
    where = np.zeros(c, dtype=np.int64)                  # its position in the leaf

    current = 0
    for slot in range(min(k, n)):
        picked[slot] = current
        centre = x[current]
        gap = np.maximum(lo - centre, 0) + np.maximum(centre - hi, 0)
        near = gap[:, 0] * gap[:, 0] + gap[:, 1] * gap[:, 1] + gap[:, 2] * gap[:, 2]
        # a leaf whose box is not nearer than its largest distance keeps every distance (the
        # bound is a little low in float32, never high: nothing that could change is skipped)
        touched = np.nonzero(near * np.float32(1 - 1e-6) <= best)[0]
        d = _squared(padded[touched], centre)
        r = np.minimum(running[touched], np.where(valid[touched], d, np.float32(-np.inf)))
        running[touched] = r
        where[touched] = np.argmax(r, axis=1)
        best[touched] = r[np.arange(len(touched)), where[touched]]
        top = best.max()
        holders = np.nonzero(best == top)[0]
        current = int(index[holders, where[holders]].min())
    return picked
