"""Masks: per-vertex weights that scale the motion, 0 pinned to the rest pose, 1 free.

Weights arrive per caller vertex. Vertices that the mesh preparation welded into one row (UV
seams, split normals) get the smallest of their weights, so a pinned vertex is never pulled
along by its twin and seams stay closed. An optional falloff makes the edge of a hard mask soft:
a free vertex at surface distance d from the nearest pinned one moves with
weight * smoothstep(d / radius), so pinned vertices stay exactly pinned and the ramp follows the
surface (a hand near a hip is far from it along the arm).
"""

from __future__ import annotations

import heapq

import numpy as np

from .loops import smoothstep


def welded_weights(to_original: np.ndarray, mask: np.ndarray, rows: int) -> np.ndarray:
    """Per-caller-vertex weights -> per-welded-row weights (the minimum over merged vertices)."""
    weights = np.full(rows, np.inf)
    np.minimum.at(weights, np.asarray(to_original), np.asarray(mask, dtype=np.float64))
    return np.where(np.isfinite(weights), weights, 1.0)


def surface_distance(points: np.ndarray, edges: np.ndarray, sources: np.ndarray,
                     limit: float) -> np.ndarray:
    """Shortest distance along the edges from any source vertex; inf beyond `limit`.

    Dijkstra from all sources at once, stopping at `limit`: only the band that the falloff
    touches is visited, so a large mesh with a small radius costs little.
    """
    n = points.shape[0]
    distance = np.full(n, np.inf)
    if not len(edges) or not sources.any():
        return distance
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    order = np.argsort(e[:, 0], kind="stable")
    starts = np.searchsorted(e[order, 0], np.arange(n + 1))
    neighbours = e[order, 1]
    lengths = np.linalg.norm(points[e[order, 0]] - points[neighbours], axis=1)
    distance[sources] = 0.0
    heap = [(0.0, int(v)) for v in np.flatnonzero(sources)]
    heapq.heapify(heap)
    while heap:
        d, v = heapq.heappop(heap)
        if d > distance[v]:
            continue
        for k in range(starts[v], starts[v + 1]):
            nd = d + lengths[k]
            u = neighbours[k]
            if nd < distance[u] and nd <= limit:
                distance[u] = nd
                heapq.heappush(heap, (nd, int(u)))
    return distance


def soften(weights: np.ndarray, points: np.ndarray, edges: np.ndarray, radius: float) -> np.ndarray:
    """weights * smoothstep(surface distance to the nearest pinned vertex / radius)."""
    if radius <= 0:
        return weights
    pinned = weights <= 0
    distance = surface_distance(points, edges, pinned, radius)
    return weights * np.where(np.isfinite(distance), smoothstep(distance / radius), 1.0)


def apply_mask(frames: np.ndarray, weights: np.ndarray, anchor: np.ndarray | None = None) -> np.ndarray:
    """(T, N, 3) with each vertex's displacement from `anchor` (N, 3: the rest pose; default
    frame 0) scaled by its weight; weight 0 gives the anchor exactly at every frame."""
    f = np.asarray(frames)
    base = f[:1] if anchor is None else np.asarray(anchor, dtype=f.dtype)[None]
    return base + np.asarray(weights, dtype=f.dtype)[None, :, None] * (f - base)


def border_distortion(frames: np.ndarray, edges: np.ndarray, weights: np.ndarray) -> float:
    """Mean |l_t / l_0 - 1| over the edges that cross the mask's border (one end pinned, the
    other not) or lie in its falloff (weights strictly between 0 and 1)."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    e = e[e[:, 0] < e[:, 1]]
    a, b = weights[e[:, 0]], weights[e[:, 1]]
    chosen = e[((a == 0) != (b == 0)) | ((a > 0) & (a < 1)) | ((b > 0) & (b < 1))]
    if not len(chosen):
        return 0.0
    f = np.asarray(frames, dtype=np.float64)
    lengths = np.linalg.norm(f[:, chosen[:, 0]] - f[:, chosen[:, 1]], axis=-1)
    return float(np.abs(lengths / np.maximum(lengths[:1], 1e-12) - 1).mean())
