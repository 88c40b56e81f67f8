"""Farthest point sampling of features, filtered by one matrix-vector product per pick, picks
exactly what the plain loop picks (backend/models/fps_features.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.models import farthest_point_sampling as fps
from backend.models import fps_features
from backend.models.fps_features import farthest_features


def plain(x: torch.Tensor, k: int) -> torch.Tensor:
    return fps._fps_loop(x, k, torch.full((k,), -1, dtype=torch.long))


def gaussian(n: int, d: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def mesh_like(n: int, d: int = 256, seed: int = 0) -> torch.Tensor:
    """A random MLP of a shell's positions: correlated, low-dimensional, as vertex features."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, np.pi, n)
    r = 1 + 0.3 * np.sin(5 * u)
    p = torch.from_numpy(np.stack([r * np.cos(u) * np.sin(v), 0.5 * np.sin(u) * np.sin(v),
                                   2 * np.cos(v)], axis=1).astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(3, 64, generator=g), torch.randn(64, d, generator=g) / 8
    return torch.nn.functional.gelu(p @ w1) @ w2


def same_picks(x: torch.Tensor, k: int) -> None:
    x = fps.denormal_safe(x.float().contiguous())
    got, want = farthest_features(x, k), plain(x, k)
    assert torch.equal(got, want), f"first difference at slot {int((got != want).nonzero()[0])}"


@pytest.mark.parametrize("n, k", [(3000, 375), (20000, 400)])
def test_gaussian_features(n, k):
    same_picks(gaussian(n), k)


def test_mesh_like_features():
    same_picks(mesh_like(6000), 750)


def test_large_common_offset(monkeypatch):
    # norms around 1e4 against differences around 1e-2: uncentred, the estimate's rounding
    # would dwarf every distance and each pick would fall back to the plain step
    full_steps = []
    step = fps_features._plain_step
    monkeypatch.setattr(fps_features, "_plain_step", lambda *a: full_steps.append(1) or step(*a))
    x = 1e4 + 1e-2 * gaussian(4000)
    same_picks(x, 500)
    assert len(full_steps) < 20


@pytest.mark.parametrize("dim", [4, 64, 256])
def test_far_apart_clusters(dim):
    # centring cannot help: every centred norm is ~1e3 against distances ~1e-1 inside a cluster.
    # The float estimate's actual error here is ~1/30 (D = 4) to ~1/300 (D = 256) of its
    # worst-case bound, so a bound cut 100-fold (D = 4) or 1000-fold misses updates
    x = 0.1 * gaussian(4000, dim)
    x[::2, 0] += 1e3
    x[1::2, 1] -= 1e3
    same_picks(x, 600)


def test_candidate_distances_are_the_plain_loops_own_sums():
    """A row whose squared distance depends on the order of its sum ties another row exactly
    under torch's order only; any other order (numpy's pairwise sum, a running sum) loses more
    of its small terms and hands the pick to the other row."""
    dim = 256
    x = 1e-3 * gaussian(2003, dim)
    x[:, 1] += 50                        # row 0 and the rest: a tight clump at 50 e_1
    x[0] = 0
    x[0, 1] = 50
    far, a, b = 2000, 2001, 2002
    x[far] = 0
    x[far, 0] = 100                      # the second pick
    x[a] = 2.0 ** -12                    # squares of exactly half an ulp of 1 beside a 1
    x[a, 0] = 99
    squared = torch.sum((x[a:a + 1] - x[far:far + 1]).square(), dim=1)
    side = torch.sqrt(squared.double()).float()
    assert torch.equal(side.square(), squared)
    x[b] = x[far]
    x[b, 1] = side                       # one term: its sum is exact in any order
    want = plain(x, 4)
    assert want[:3].tolist() == [0, far, a]          # the tie goes to the lower index
    assert torch.equal(farthest_features(x, 4), want)


def test_duplicate_rows_and_ties():
    distinct = torch.randint(0, 3, (40, 32), generator=torch.Generator().manual_seed(1)).float()
    rows = torch.randint(0, 40, (3000,), generator=torch.Generator().manual_seed(2))
    x = distinct[rows]
    x[100:200] = x[7]                    # a run of copies of one row
    # more picks than distinct rows: the rest of the running distances are all zero
    same_picks(x, 120)


def test_integer_lattice_ties():
    x = torch.randint(0, 4, (2500, 16), generator=torch.Generator().manual_seed(3)).float()
    same_picks(x, 400)


def test_tiny_features_go_through_denormal_scaling(monkeypatch):
    calls = []
    monkeypatch.setattr(fps, "farthest_features",
                        lambda x, k: calls.append(1) or farthest_features(x, k))
    x = 1e-30 * gaussian(2000, 64)
    x[:, 0] += 1e-25                     # near-identical rows: squared distances below 1e-60
    got = fps.farthest_point_sampling(x, 250)
    # the scale (2^140 here) is itself beyond float32: applied in one step it made every row inf
    assert torch.isfinite(fps.denormal_safe(x)).all()
    assert calls and torch.equal(got, plain(fps.denormal_safe(x), 250))


@pytest.mark.parametrize("dim", [4, 64])
def test_unscaled_tiny_features_whose_squares_underflow(dim):
    # called without denormal_safe: products below float32's normal range lose their relative
    # precision, which only the bound's absolute term covers
    x = 1e-22 * gaussian(3000, dim)
    assert torch.equal(farthest_features(x, 300), plain(x, 300))


def test_positions_are_not_routed_here(monkeypatch):
    def refuse(x, k):
        raise AssertionError("D == 3 must use the spatial sampler")
    monkeypatch.setattr(fps, "farthest_features", refuse)
    fps.farthest_point_sampling(torch.rand(5000, 3), 50)
    fps.farthest_point_sampling(torch.rand(300, 3), 50)


def test_small_inputs_keep_the_plain_loop(monkeypatch):
    monkeypatch.setattr(fps, "farthest_features", lambda x, k: pytest.fail("small N"))
    x = gaussian(fps.FEATURE_MIN_POINTS, 16)
    assert torch.equal(fps.farthest_point_sampling(x, 40), plain(x, 40))


@pytest.mark.parametrize("n, k", [(700, 900), (700, 700), (1, 3), (0, 4), (5, 0)])
def test_more_slots_than_points_are_minus_one(n, k):
    x = gaussian(n, 24)
    got = farthest_features(x, k)
    assert torch.equal(got, plain(x, k)) if n else (got == -1).all()
    assert (got[n:] == -1).all() and got.shape == (k,)


def test_all_points_equal_repeat_the_first():
    assert farthest_features(torch.ones(600, 8), 5).tolist() == [0] * 5


def test_unusable_features_keep_the_plain_loop():
    assert fps_features.usable(gaussian(10, 8))
    assert not fps_features.usable(torch.tensor([[1.0, float("nan")]]))
    assert not fps_features.usable(torch.full((4, 256), 1e18))


@pytest.mark.parametrize("dim", [3, 64, 256, 257])
def test_row_sums_do_not_depend_on_how_many_rows(dim):
    """The filter recomputes a few rows' distances; they must equal the full pass's exactly."""
    x = 100 * gaussian(9000, dim) + gaussian(1, dim, seed=5)
    whole = torch.sum((x - x[3:4]).square(), dim=1)
    order = torch.randperm(9000, generator=torch.Generator().manual_seed(4))
    for m in (1, 2, 7, 16, 33, 1000, 9000):
        rows = order[:m]
        diff = x.numpy()[rows.numpy()] - x.numpy()[3]
        part = torch.from_numpy(np.square(diff)).sum(dim=1)
        assert torch.equal(part, whole[rows])
