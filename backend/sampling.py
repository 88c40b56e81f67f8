"""Rectified-flow sampling, independent of any particular network.

Convention (as the official model was trained): t = 0 is noise, t = 1 is data, and the network
predicts the velocity data - noise. The shape half of the latent is known (it comes from the
encoder of the user's mesh), so it is written into the state before every evaluation and only
the trajectory half is generated. Classifier-free guidance mixes the conditional and the null
prompt's velocities: uncond + s * (cond - uncond).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .config import LatentStats
from .errors import UserError
from .solvers import OFFICIAL_SOLVER, get_solver

# velocity(x (B, K, C), t scalar tensor) -> (B, K, C)
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Cancelled(Exception):
    """Raised inside the sampler when the caller's cancel check says stop."""


def time_grid(steps: int, shift: float = 1.0) -> torch.Tensor:
    """Fixed float32 grid from 0 to 1 with `steps` points (torch.linspace, as the reference).

    shift > 1 warps it as t -> shift t / (1 + (shift - 1) t): longer steps in the noise, where
    the velocity barely changes, and shorter ones near the data, where the motion takes shape.
    """
    if steps < 2:
        raise UserError(f"steps must be at least 2 (got {steps}): the solver needs a start and an end point.")
    grid = torch.linspace(0.0, 1.0, steps, dtype=torch.float32)
    if shift != 1.0:
        grid = shift * grid / (1 + (shift - 1) * grid)
    return grid


def evaluations_per_run(steps: int, solver: str) -> int:
    return (steps - 1) * get_solver(solver).evaluations_per_step


def guided_velocity(model: Callable, shape_latent: torch.Tensor, cond: torch.Tensor,
                    uncond: torch.Tensor, guidance: float) -> VelocityFn:
    """Wrap a flow network into the guided velocity field with the shape half clamped.

    model(x, t (B,), text_hidden, text_keep) -> velocity; cond/uncond: (1, L, Dt) text states.
    """
    half = shape_latent.shape[-1]
    text = torch.cat([cond, uncond], dim=0)
    keep = torch.tensor([1.0, 0.0], device=cond.device)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[..., :half] = shape_latent
        if guidance == 1.0:  # uncond + 1 * (cond - uncond) == cond: skip the null pass
            return model(x, t.reshape(1).expand(x.shape[0]), cond.expand(x.shape[0], -1, -1),
                         keep[:1].expand(x.shape[0]))
        out = model(torch.cat([x, x]), t.reshape(1).expand(2 * x.shape[0]),
                    text.repeat_interleave(x.shape[0], 0), keep.repeat_interleave(x.shape[0]))
        c, u = out.chunk(2)
        return u + guidance * (c - u)

    return velocity


def integrate(velocity: VelocityFn, noise: torch.Tensor, grid: torch.Tensor, solver: str = OFFICIAL_SOLVER,
              on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Integrate dx/dt = velocity from grid[0] to grid[-1] on the fixed grid with a registered
    solver. on_step(done, total) is called after every evaluation; it may raise Cancelled."""
    method = get_solver(solver)
    grid = grid.to(noise.device)
    total = (len(grid) - 1) * method.evaluations_per_step
    done = 0

    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal done
        v = velocity(x, t)
        done += 1
        if on_step:
            on_step(done, total)
        return v

    y = noise
    memory: dict = {}
    for t0, t1 in zip(grid[:-1], grid[1:]):
        y = method.step(counted, y, t0, t1, memory)
    return y


def rescale(latent: torch.Tensor, stats: LatentStats) -> torch.Tensor:
    """Encoder latent -> the unit-scale space the flow model works in."""
    half = latent.shape[-1] // 2
    return torch.cat([(latent[..., :half] - stats.f0_mean) / stats.f0_std,
                      (latent[..., half:] - stats.ft_mean) / stats.ft_std], dim=-1)


def unscale(latent: torch.Tensor, stats: LatentStats) -> torch.Tensor:
    half = latent.shape[-1] // 2
    return torch.cat([latent[..., :half] * stats.f0_std + stats.f0_mean,
                      latent[..., half:] * stats.ft_std + stats.ft_mean], dim=-1)


@dataclass
class SampleResult:
    latent_scaled: torch.Tensor    # final state with the shape half re-imposed (flow-model space)
    latent: torch.Tensor           # unscaled: what the VAE decodes


def sample_trajectory_latent(model: Callable, shape_latent_scaled: torch.Tensor, cond: torch.Tensor,
                             uncond: torch.Tensor, noise: torch.Tensor, stats: LatentStats, *,
                             steps: int, guidance: float, solver: str = OFFICIAL_SOLVER,
                             shift: float = 1.0, on_step=None) -> SampleResult:
    """Generate the trajectory half for a known shape half (both in flow-model space)."""
    velocity = guided_velocity(model, shape_latent_scaled, cond, uncond, guidance)
    final = integrate(velocity, noise, time_grid(steps, shift), solver, on_step).clone()
    final[..., :shape_latent_scaled.shape[-1]] = shape_latent_scaled
    return SampleResult(final, unscale(final, stats))
