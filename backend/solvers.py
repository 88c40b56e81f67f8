"""ODE solvers for rectified-flow sampling: one small function each, found by name.

A solver advances the state one step of the time grid, `step(velocity, y, t0, t1, memory) -> y`,
and declares how many velocity evaluations that costs and its order of convergence. `memory` is
a dict that lives for one run: a multistep solver keeps its earlier velocities there. The loop around it (the grid, progress,
cancelling) lives once in `sampling.integrate`. This registry is the only place that knows the
solvers: the backend's Ready message, both command lines and the add-on's panel list what is
registered here, so a new solver is one function below plus its test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import UserError

# velocity(y, t) -> dy/dt; y is a tensor, t a 0-d tensor
StepFn = Callable[[Callable, object, object, object, dict], object]


@dataclass(frozen=True)
class Solver:
    name: str
    evaluations_per_step: int
    description: str
    step: StepFn
    order: int

    def as_dict(self) -> dict:
        """What the protocol's Ready message carries about it."""
        return {"name": self.name, "evaluations_per_step": self.evaluations_per_step,
                "description": self.description}


SOLVERS: dict[str, Solver] = {}
# The solver of the official sampler: what a model folder's config asks for unless it says otherwise.
OFFICIAL_SOLVER = "midpoint"


def register(name: str, evaluations_per_step: int, description: str, order: int | None = None):
    """order: how fast the error falls with the step size (default: one per evaluation)."""
    def add(step: StepFn) -> StepFn:
        if name in SOLVERS:
            raise ValueError(f"solver {name!r} is registered twice")
        SOLVERS[name] = Solver(name, evaluations_per_step, description, step,
                               order or evaluations_per_step)
        return step
    return add


def get_solver(name: str) -> Solver:
    solver = SOLVERS.get(name)
    if solver is None:
        raise UserError(f"unknown solver {name!r}; this backend has: {', '.join(SOLVERS)}.")
    return solver


def solver_names() -> list[str]:
    return list(SOLVERS)


# ----------------------------------------------------------------------------- the solvers

@register("midpoint", 2, "Second order: one extra evaluation at the half step (the official "
          "solver)")
def midpoint(velocity, y, t0, t1, memory):
    half = 0.5 * (t1 - t0)
    k1 = velocity(y, t0)
    return y + (t1 - t0) * velocity(y + k1 * half, t0 + half)


@register("euler", 1, "First order: one evaluation a step (fastest per step, needs more steps)")
def euler(velocity, y, t0, t1, memory):
    return y + (t1 - t0) * velocity(y, t0)


@register("ab2", 1, "Second order at one evaluation a step: Adams-Bashforth, reusing the last "
          "step's velocity (the first step is Euler's)", order=2)
def adams_bashforth2(velocity, y, t0, t1, memory):
    k = velocity(y, t0)
    h = t1 - t0
    previous = memory.get("previous")
    memory["previous"] = (k, h)
    if previous is None:
        return y + h * k
    k_before, h_before = previous
    ratio = h / h_before  # the variable-step form: exact for a linear velocity on any grid
    return y + h * ((1 + 0.5 * ratio) * k - 0.5 * ratio * k_before)
