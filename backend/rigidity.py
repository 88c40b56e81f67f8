"""Keep Shape: an as-rigid-as-possible projection of each generated frame.

The decoder predicts every vertex's trajectory on its own, so a take that should be rigid or
articulated (a spin, a roll, a tail wag) comes out with edges that stretch and shrink by a few
percent; on a dense scanned mesh that reads as swimming surface detail. Each frame is replaced
by the shape closest to it whose edges keep their rest lengths as far as possible:

    min over p   sum_(i,j) |(p_i - p_j) - R_i (r_i - r_j)|^2  +  w sum_i |p_i - q_i|^2

with r the rest pose (frame 0), q the generated frame, R_i a rotation per vertex and w the
weight that keeps the motion the model made (Sorkine & Alexa's local/global iteration, uniform
weights so that any mesh works, faces or not). w is `data_weight` times (mean edge length /
diagonal)^2: the edge term grows with the edge count and shrinks with the edge length, and
without that factor a dense mesh (short edges) would keep a smooth stretch that a coarse one
loses. Rigid motions cost the edge term nothing, so they pass through whatever w is. The local
step fits every R_i by a 3x3 SVD, all frames at once; the global step solves one sparse system
(L + w I) p = b, the same for every frame and coordinate, by Jacobi-preconditioned conjugate
gradients from the current frame.

A motion that is meant to change edge lengths (grow, melt, squash and stretch) loses its
deformation under the projection. `auto` therefore keeps the projected take only where the
projection changed it little: when the vertices moved, on the worst frame, more than
`AUTO_CHANGE` of the take's peak displacement on average, the generated take stands.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from aam_seam import limits

MODES = tuple(limits.KEEP_SHAPE_MODES)
DATA_WEIGHT = 10.0
ITERATIONS = 4
CG_STEPS = 20
AUTO_CHANGE = 0.1


@dataclass(frozen=True)
class RigidityResult:
    frames: torch.Tensor   # (T, N, 3)
    applied: bool          # False: the generated frames came back (off, no edges, or auto declined)
    change: float          # how far the projection moved the take, over the take's own motion


def _adjacency(edges, n: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric 0/1 adjacency matrix (CSR) of the undirected edges, and every degree."""
    e = torch.as_tensor(edges, dtype=torch.long).reshape(-1, 2)
    e = torch.unique(torch.cat([e, e.flip(1)]), dim=0)  # sorted by row: the CSR order
    e = e[e[:, 0] != e[:, 1]]
    degree = torch.bincount(e[:, 0], minlength=n).to(dtype)
    crow = torch.zeros(n + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.bincount(e[:, 0], minlength=n), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR is in beta"; products are exact
        adjacency = torch.sparse_csr_tensor(crow, e[:, 1].contiguous(), torch.ones(len(e), dtype=dtype), (n, n),
                                            check_invariants=False)
    return adjacency, degree


def _best_rotations(rest: torch.Tensor, current: torch.Tensor, adjacency, degree) -> torch.Tensor:
    """(F, N, 3, 3): per frame and vertex, the rotation taking its rest edge fan closest to the
    current one. The covariance sum_j (r_i - r_j)(c_i - c_j)^T expands into products with the
    adjacency matrix, so no per-edge array is ever built."""
    f, n, _ = current.shape
    cols = current.permute(1, 0, 2)                                            # (N, F, 3)
    a_rest = adjacency @ rest                                                  # (N, 3)
    a_cur = (adjacency @ cols.reshape(n, 3 * f)).reshape(n, f, 3)
    a_outer = (adjacency @ (rest[:, None, :, None] * cols[:, :, None, :]).reshape(n, 9 * f)).reshape(n, f, 3, 3)
    cov = (degree[:, None, None, None] * rest[:, None, :, None] * cols[:, :, None, :]
           - rest[:, None, :, None] * a_cur[:, :, None, :]
           - a_rest[:, None, :, None] * cols[:, :, None, :] + a_outer)
    u, _, vh = torch.linalg.svd(cov)
    rot = vh.transpose(-1, -2) @ u.transpose(-1, -2)
    flip = torch.linalg.det(rot) < 0
    if flip.any():  # a reflection is not a rotation: flip the axis of the smallest singular value
        u = u.clone()
        u[flip, :, 2] = -u[flip, :, 2]
        rot = vh.transpose(-1, -2) @ u.transpose(-1, -2)
    return rot                                                                 # (N, F, 3, 3)


def _rotated_rest(rot: torch.Tensor, rest: torch.Tensor, adjacency, degree) -> torch.Tensor:
    """(N, F, 3): sum_j (R_i + R_j)/2 (r_i - r_j) for every vertex i, expanded the same way."""
    n, f = rot.shape[:2]
    a_rest = adjacency @ rest
    own = rot @ (degree[:, None] * rest - a_rest)[:, None, :, None]            # R_i sum_j (r_i - r_j)
    a_rot = (adjacency @ rot.reshape(n, 9 * f)).reshape(n, f, 3, 3)            # sum_j R_j
    a_rot_rest = (adjacency @ (rot @ rest[:, None, :, None]).reshape(n, 3 * f)).reshape(n, f, 3, 1)
    return 0.5 * (own + a_rot @ rest[:, None, :, None] - a_rot_rest).squeeze(-1)


def _conjugate_gradients(apply, b: torch.Tensor, x: torch.Tensor, inv_diag: torch.Tensor,
                         steps: int) -> torch.Tensor:
    """Solve A x = b column by column (A symmetric positive definite), starting from x."""
    r = b - apply(x)
    z = inv_diag[:, None] * r
    d = z.clone()
    rz = (r * z).sum(0)
    for _ in range(steps):
        ad = apply(d)
        alpha = rz / (d * ad).sum(0).clamp_min(1e-30)
        x = x + alpha * d
        r = r - alpha * ad
        z = inv_diag[:, None] * r
        rz_next = (r * z).sum(0)
        d = z + (rz_next / rz.clamp_min(1e-30)) * d
        rz = rz_next
    return x


def arap_project(frames: torch.Tensor, edges, data_weight: float = DATA_WEIGHT,
                 iterations: int = ITERATIONS, cg_steps: int = CG_STEPS, step=None) -> torch.Tensor:
    """Every frame of `frames` (T, N, 3) projected towards frame 0's edge lengths.

    `edges` (E, 2) lists undirected edges in either or both directions. Frame 0 stays as it is.
    `step(done, iterations)` runs before each iteration and after the last (progress; it may
    raise to cancel).
    """
    frames = torch.as_tensor(frames).to(torch.float64)
    t, n, _ = frames.shape
    adjacency, degree = _adjacency(edges, n, frames.dtype)
    rest = frames[0]
    data_weight = data_weight * relative_scale(rest, adjacency)
    target = frames[1:].permute(1, 0, 2).reshape(n, 3 * (t - 1))              # (N, 3(T-1)) columns

    def apply(x):  # (L + w I) x, L = degree - adjacency: one matrix for every frame and axis
        return degree[:, None] * x - adjacency @ x + data_weight * x

    inv_diag = 1.0 / (degree + data_weight)
    current = target.clone()
    for done in range(iterations):
        if step is not None:
            step(done, iterations)
        rot = _best_rotations(rest, current.reshape(n, t - 1, 3).permute(1, 0, 2), adjacency, degree)
        b = _rotated_rest(rot, rest, adjacency, degree).reshape(n, 3 * (t - 1)) + data_weight * target
        current = _conjugate_gradients(apply, b, current, inv_diag, cg_steps)
    if step is not None:
        step(iterations, iterations)
    return torch.cat([frames[:1], current.reshape(n, t - 1, 3).permute(1, 0, 2)]).to(torch.float32)


def relative_scale(rest: torch.Tensor, adjacency) -> float:
    """(mean edge length / bounding-box diagonal)^2 of the rest pose."""
    crow, col = adjacency.crow_indices(), adjacency.col_indices()
    row = torch.repeat_interleave(torch.arange(len(crow) - 1), crow[1:] - crow[:-1])
    mean_edge = float((rest[row] - rest[col]).norm(dim=-1).mean())
    diagonal = float((rest.max(0).values - rest.min(0).values).norm())
    return (mean_edge / diagonal) ** 2 if diagonal > 0 else 1.0


def peak_displacement(frames: torch.Tensor) -> float:
    """The largest, over frames, of the vertices' mean distance from frame 0."""
    return float((frames - frames[:1]).norm(dim=-1).mean(dim=1).max())


def keep_shape(frames, edges, mode: str, data_weight: float = DATA_WEIGHT,
               step=None) -> RigidityResult:
    """The take after Keep Shape `mode` ("off", "auto" or "on"); see the module notes."""
    if mode not in MODES:
        raise ValueError(f"keep shape mode {mode!r}: use one of {', '.join(MODES)}")
    frames = torch.as_tensor(frames, dtype=torch.float32)
    edges = torch.as_tensor(edges, dtype=torch.long).reshape(-1, 2)
    if mode == "off" or len(edges) == 0 or frames.shape[0] < 2:
        return RigidityResult(frames, False, 0.0)
    projected = arap_project(frames, edges, data_weight, step=step)
    motion = peak_displacement(frames)
    moved = float((projected - frames).norm(dim=-1).mean(dim=1).max())
    change = moved / motion if motion > 0 else 0.0
    if mode == "auto" and change > AUTO_CHANGE:
        return RigidityResult(frames, False, change)
    return RigidityResult(projected, True, change)
