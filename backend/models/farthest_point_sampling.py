"""Choosing which vertices become latent tokens: farthest point sampling on features.

DyMeshVAE picks K vertices by farthest point sampling on their post-neighbour features (not on
xyz; our own models sample positions, which fps_spatial.py does exactly and far faster; features
go through fps_features.py, as exact, at about one matrix-vector product per pick), then fills
empty slots (K larger than the vertex count) with random vertices. The official
fix-up treats index 0 as empty too, so the start vertex is always replaced by a random one; that
is reproduced when `replace_index_zero` is set.
"""

from __future__ import annotations

import math

import torch

from .fps_features import farthest_features, usable
from .fps_spatial import farthest_points

# Below this many points the plain loop is as fast (measured: benchmarks/fps_bench.py).
SPATIAL_MIN_POINTS = 4096
FEATURE_MIN_POINTS = 512


@torch.no_grad()
def farthest_point_sampling(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of k rows of `features` (N, D), greedily farthest in squared L2, starting at row 0.

    Ties go to the lowest index. Slots beyond N are -1 (as the reference kernel returns).
    """
    n = features.shape[0]
    picked = torch.full((k,), -1, dtype=torch.long, device=features.device)
    if n == 0 or k == 0:
        return picked
    x = denormal_safe(features.float().contiguous())
    if x.shape[1] == 3 and n > SPATIAL_MIN_POINTS and x.device.type == "cpu":
        # positions (the embedded model): the same picks, pruned to the neighbourhood of each
        return torch.from_numpy(farthest_points(x.numpy(), k))
    if x.shape[1] != 3 and n > FEATURE_MIN_POINTS and x.device.type == "cpu" and usable(x):
        # features (the official model): the same picks from one matrix-vector product per pick.
        # The filter works on host (numpy) arrays, so a GPU keeps the plain loop (not measured
        # there: that loop needs no host sync per pick, the filter would need two)
        return farthest_features(x, k)
    return _fps_loop(x, k, picked)


def denormal_safe(x: torch.Tensor) -> torch.Tensor:
    """x scaled by the largest power of two that keeps sums of squared differences finite.

    Squared differences of near-identical rows fall into float32's denormal range, which x86
    processes ~50x slower. A power-of-two scale is exact and keeps every distance comparison
    the same, so FPS picks the same rows, only faster.
    """
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak > 0 and math.isfinite(peak):
        exponent = math.floor(math.log2(math.sqrt(1e37 / x.shape[-1]) / (2 * peak)))
        # in steps: a factor above 2^127 is infinite as a float32 scalar (peaks below ~1e-20)
        while exponent > 0:
            step = min(exponent, 64)
            x = x * 2.0 ** step
            exponent -= step
    return x


def _fps_loop(x: torch.Tensor, k: int, picked: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    min_dist = torch.full((n,), float("inf"), device=x.device)
    diff = torch.empty_like(x)
    dist = torch.empty(n, device=x.device)
    current = torch.zeros(1, dtype=torch.long, device=x.device)
    for slot in range(min(k, n)):
        picked[slot] = current[0]
        torch.sub(x, x.index_select(0, current), out=diff)
        torch.sum(diff.square_(), dim=1, out=dist)
        torch.minimum(min_dist, dist, out=min_dist)
        current = torch.argmax(min_dist).reshape(1)
    return picked


def fill_token_indices(raw: torch.Tensor, valid_length: int, uniform: torch.Tensor,
                       replace_index_zero: bool = True) -> torch.Tensor:
    """Replace empty slots (-1, and index 0 when `replace_index_zero`) by floor(u * valid_length).

    `uniform` holds one U[0,1) draw per slot (the official code draws torch.rand(B, K)).
    """
    empty = raw <= 0 if replace_index_zero else raw < 0
    random_rows = (uniform * valid_length).long().clamp_(max=max(valid_length - 1, 0))
    return torch.where(empty, random_rows.to(raw.device), raw)


def sample_token_indices(features: torch.Tensor, valid_length: int, k: int,
                         generator: torch.Generator | None = None,
                         replace_index_zero: bool = True) -> torch.Tensor:
    """FPS over the first `valid_length` rows followed by the empty-slot fill-up. Returns (K,)."""
    raw = farthest_point_sampling(features[:valid_length], k)
    uniform = torch.rand(k, generator=generator)
    return fill_token_indices(raw, valid_length, uniform, replace_index_zero)
