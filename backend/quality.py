"""Quality presets: how much sampling a take gets, by name.

A rectified flow's paths are nearly straight, so far fewer evaluations than a model was trained
with reach nearly the same motion. Measured against a 128-evaluation midpoint reference on
held-out clips (benchmarks/solver_bench.py, the README's table), the second-order multistep
solver beat midpoint and Euler at equal evaluations: at 16 on a grid warped towards the data end
(3.6% mean deviation on 50 clips), at 8 on the uniform grid (8.9%; warped, 10.1%). The presets
are the cheapest schedules that met their targets there (5% and 10%). `reference` is the
model's own schedule from its config (for the official weights: the official sampler, which
the parity tests hold to the official outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

from aam_seam.limits import DEFAULT_QUALITY, QUALITY_PRESETS

from .config import SamplerDefaults


@dataclass(frozen=True)
class Schedule:
    solver: str
    steps: int          # grid points: evaluations = (steps - 1) * the solver's per step
    shift: float = 1.0  # the time grid's warp (sampling.time_grid)


SCHEDULES: dict[str, Schedule | None] = {
    "draft": Schedule("ab2", 9, 1.0),       # 8 evaluations (the warped grid measured worse here)
    "standard": Schedule("ab2", 17, 2.0),   # 16 evaluations
    "reference": None,                      # the model's config
}
assert set(SCHEDULES) == set(QUALITY_PRESETS), "quality.py and limits.QUALITY_PRESETS must agree"


def schedule_for(quality: str | None, model_sampler: SamplerDefaults, steps: int | None = None,
                 solver: str | None = None) -> Schedule:
    """The schedule a request runs: an explicit steps or solver runs as asked on the uniform grid
    (the model's solver or steps filling what was not given); otherwise the named preset."""
    if steps is not None or solver:
        return Schedule(solver or model_sampler.solver, steps or model_sampler.steps, 1.0)
    preset = SCHEDULES[quality or DEFAULT_QUALITY]
    return preset or Schedule(model_sampler.solver, model_sampler.steps, 1.0)
