"""Farthest point sampling of positions, pruned by a tree of boxes, picks exactly what the plain
loop picks (backend/models/fps_spatial.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.models import farthest_point_sampling as fps
from backend.models.fps_spatial import farthest_points, leaves


def plain(points: np.ndarray, k: int) -> np.ndarray:
    x = fps.denormal_safe(torch.from_numpy(points))
    picked = torch.full((k,), -1, dtype=torch.long)
    return fps._fps_loop(x, k, picked).numpy() if len(points) and k else picked.numpy()


def cloud(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        return rng.normal(size=(n, 3)).astype(np.float32)
    if kind == "surface":      # a thin, uneven shell, as mesh vertices are
        u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, np.pi, n)
        r = 1 + 0.3 * np.sin(5 * u)
        return np.stack([r * np.cos(u) * np.sin(v), 0.5 * np.sin(u) * np.sin(v),
                         2 * np.cos(v)], axis=1).astype(np.float32)
    if kind == "ties":         # a lattice: many exactly equal distances
        return rng.integers(0, 9, size=(n, 3)).astype(np.float32)
    if kind == "tiny":         # near-identical points (the denormal range of float32)
        return (1.0 + 1e-20 * rng.normal(size=(n, 3))).astype(np.float32)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["gauss", "surface", "ties", "tiny"])
@pytest.mark.parametrize("n, k", [(300, 300), (3000, 375), (9000, 1500)])
def test_same_picks_as_the_plain_loop(kind, n, k):
    points = cloud(kind, n)
    x = fps.denormal_safe(torch.from_numpy(points)).numpy()
    assert np.array_equal(farthest_points(x, k, leaf=16), plain(points, k))


@pytest.mark.parametrize("n, k", [(0, 4), (5, 0), (1, 3), (4, 9)])
def test_empty_slots_are_minus_one(n, k):
    points = cloud("gauss", n)
    got = farthest_points(points, k)
    assert np.array_equal(got, plain(points, k)) and (got[n:] == -1).all()


def test_all_points_equal_repeat_the_first_as_the_loop_does():
    points = np.ones((50, 3), dtype=np.float32)
    # every running distance is 0 after the first pick, and argmax of zeros is row 0 again
    assert farthest_points(points, 5, leaf=8).tolist() == plain(points, 5).tolist() == [0] * 5


def test_leaves_cover_every_point_once():
    points = cloud("surface", 5000)
    groups = leaves(points, 64)
    assert max(len(g) for g in groups) <= 64
    assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(5000))


def test_the_sampler_takes_the_pruned_path_for_positions(monkeypatch):
    points = torch.from_numpy(cloud("surface", fps.SPATIAL_MIN_POINTS + 1000))
    calls = []
    monkeypatch.setattr(fps, "farthest_points",
                        lambda x, k: calls.append(k) or farthest_points(x, k))
    got = fps.farthest_point_sampling(points, 600)
    assert calls == [600]
    assert np.array_equal(got.numpy(), plain(points.numpy(), 600))


def test_distances_are_the_loops_to_the_last_bit():
    # the same picks need the same float32 sums: (dx² + dy²) + dz², as torch.sum over 3 values
    from backend.models.fps_spatial import _squared

    x = cloud("gauss", 20000, seed=3) * np.float32(1e3)
    c = x[7]
    ref = torch.sum((torch.from_numpy(x) - torch.from_numpy(c)).square(), dim=1).numpy()
    assert np.array_equal(_squared(x, c), ref)
