"""Exact farthest point sampling of feature vectors (N x D, D large), one matrix-vector product
per pick.

The plain loop (farthest_point_sampling._fps_loop) makes about four passes over the N x D
features per pick: subtract the picked row, square, sum each row, take the running minimum. Yet
a pick lowers the running distance of only a few points, those nearer to it than their current
distance. Here one float32 matrix-vector product per pick estimates every squared distance as
|y_i|^2 + |y_c|^2 - 2 y_i.y_c (y: the features minus their mean), and a rigorous bound on that
estimate's rounding error says which points *could* be nearer than their running distance. Only
those candidates get the plain loop's own distance (the same float32 ops on the same rows), so
the running distances, and hence the picks, are the plain loop's bit for bit; ties go to the
lowest index because the argmax is taken over the same array.

The error bound (u = 2^-24, gamma_n = n u / (1 - n u), s_i = |y_i| + |y_c|, d_i the exact squared
distance of the rows, r_i the float32 value the plain loop computes for it):
  - the plain loop's own rounding (subtract, square, then D - 1 additions of non-negative terms
    in any order): r_i >= (1 - gamma_{D+2}) d_i, and d_i <= (1 + u)^2 s_i^2;
  - centring: y_i = fl(x_i - mean) is the exact difference rounded once per element, off by at
    most u |y_i| / (1 - u) as a vector, so sqrt(d_i) >= |y_i - y_c| - u' s_i and
    d_i >= |y_i - y_c|^2 - 2 u' s_i^2;
  - |y_i - y_c|^2 = |y_i|^2 + |y_c|^2 - 2 y_i.y_c, with the norms float64 sums of exact squares;
    the float32 dot product (with the bound's own cross term folded in, in any summation order,
    with or without FMA) is off by at most gamma_{D+4} (1 + g) |y_i| |y_c| <= gamma_{D+4} s_i^2 / 4
    (g ~ 1e-4 below), doubled in the estimate.
Together r_i >= estimate_i - 1.6 gamma_{D+4} s_i^2. The filter subtracts g s_i^2 with
g = 4 gamma_{D+8} (the float64 arithmetic of the filter itself is far inside the margin), plus an
absolute term for products below float32's normal range (rounded or flushed to zero); a point
whose estimate minus that bound exceeds its running distance cannot get a smaller one, so it is
skipped. `usable` keeps every sum far from float32's overflow, which the bound does not model.

The first picks lower nearly every distance; a pick with more than a quarter of the points as
candidates runs the plain step on all of them instead.
"""

from __future__ import annotations

import numpy as np
import torch

UNIT = 2.0 ** -24        # float32's unit roundoff
FULL_FRACTION = 4        # more than N / FULL_FRACTION candidates: the plain step on every row
BLOCK = 4096             # rows per block of that plain step (keeps its buffer small)


def gamma(n: int) -> float:
    return n * UNIT / (1 - n * UNIT)


def usable(x: torch.Tensor) -> bool:
    """Whether the error analysis holds: finite, and no squared norm near float32's overflow.

    denormal_safe scales features so that D (2 peak)^2 <= 1e37; features it leaves alone can be
    larger, and there the plain loop's own sums may overflow, which the bound does not model.
    """
    peak = float(x.abs().max()) if x.numel() else 0.0
    return np.isfinite(peak) and x.shape[1] * (2 * peak) ** 2 <= 1e37


@torch.no_grad()
def farthest_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of k rows of the float32 CPU tensor `x` (N, D), greedily farthest in squared L2,
    starting at row 0, ties to the lowest index; slots beyond N are -1. The plain loop's picks
    (see the module's note); call it on features that pass `usable`.
    """
    x = x.detach().contiguous()
    n, dim = x.shape
    picked = torch.full((k,), -1, dtype=torch.long)
    if n == 0 or k == 0:
        return picked
    g = 4 * gamma(dim + 8)
    # products that underflow (or are flushed to zero) can be off by 2^-126 each, per element
    floor = (dim + 8) * 2.0 ** -120

    mean = x.double().mean(dim=0).float()
    y = x - mean
    sq = y.double().square_().sum(dim=1)             # exact squares, float64 sums
    norm = sq.sqrt()
    norm32 = norm.float()
    # estimate_i - bound_i = (1-g)|y_i|^2 + (1-g)|y_c|^2 - 2 (y_i.y_c + g|y_c||y_i|) - floor;
    # the part in i alone is fixed, the cross terms come from one addmv per pick
    own = (sq * (1 - g)).numpy()
    sq_list, norm_list = sq.tolist(), norm.tolist()

    running = torch.full((n,), float("inf"))
    running_np = running.numpy()
    x_np = x.numpy()
    cross = torch.empty(n)
    cross_np = cross.numpy()
    slack = np.empty(n)
    candidate = np.empty(n, dtype=bool)
    buffer = torch.empty(min(BLOCK, n), dim)
    dist = torch.empty(n)
    full = n // FULL_FRACTION

    order = []
    current = 0
    for _ in range(min(k, n)):
        order.append(current)
        torch.addmv(norm32, y, y[current], beta=-2 * g * norm_list[current], alpha=-2,
                    out=cross)
        # the numpy side costs ~1 us per call where torch's dispatch costs ~5-15 us; at N = 5k
        # that overhead would rival the product itself
        np.add(cross_np, own, out=slack)
        slack -= running_np
        np.less_equal(slack, floor - (1 - g) * sq_list[current], out=candidate)
        rows = np.flatnonzero(candidate)
        if len(rows) > full:
            _plain_step(x, current, buffer, dist, running)
        else:
            diff = x_np[rows]
            diff -= x_np[current]
            np.square(diff, out=diff)
            # torch's row sums, as the plain loop's: the same per-row result for any row count
            near = torch.from_numpy(diff).sum(dim=1).numpy()
            running_np[rows] = np.minimum(running_np[rows], near)
        current = int(running_np.argmax())           # first maximum, as torch.argmax
    picked[:len(order)] = torch.tensor(order)
    return picked


def _plain_step(x: torch.Tensor, current: int, buffer: torch.Tensor, dist: torch.Tensor,
                running: torch.Tensor) -> None:
    """The plain loop's update of every running distance, in blocks of rows."""
    centre = x[current:current + 1]
    for start in range(0, x.shape[0], buffer.shape[0]):
        stop = min(start + buffer.shape[0], x.shape[0])
        part = buffer[:stop - start]
        torch.sub(x[start:stop], centre, out=part)
        torch.sum(part.square_(), dim=1, out=dist[start:stop])
    torch.minimum(running, dist, out=running)
