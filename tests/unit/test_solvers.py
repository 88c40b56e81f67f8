"""The solver registry: each solver integrates a known ODE with the order it claims."""

from __future__ import annotations

import math

import pytest

from backend.errors import UserError
from backend.solvers import SOLVERS, get_solver, register


def integrate(step, steps: int) -> float:
    """dy/dt = -y from y(0) = 1 to t = 1 on a uniform grid (exact: e^-1), with plain floats."""
    grid = [i / steps for i in range(steps + 1)]
    y = 1.0
    memory = {}
    for t0, t1 in zip(grid[:-1], grid[1:]):
        y = step(lambda x, _t: -x, y, t0, t1, memory)
    return y


@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_solver_converges_at_the_order_it_claims(name):
    solver = SOLVERS[name]
    errors = [abs(integrate(solver.step, n) - math.exp(-1)) for n in (16, 32)]
    order = math.log2(errors[0] / errors[1])
    assert abs(order - solver.order) < 0.2, (name, order)


def test_solvers_count_their_evaluations_and_describe_themselves():
    for solver in SOLVERS.values():
        calls = []

        def velocity(x, t):
            calls.append(t)
            return -x

        memory = {}
        solver.step(velocity, 1.0, 0.0, 0.5, memory)
        solver.step(velocity, 1.0, 0.5, 1.0, memory)
        assert len(calls) == 2 * solver.evaluations_per_step
        assert solver.as_dict() == {"name": solver.name, "description": solver.description,
                                    "evaluations_per_step": solver.evaluations_per_step}
        assert solver.description


def test_an_unknown_solver_is_refused_with_the_list_and_names_stay_unique():
    with pytest.raises(UserError, match="unknown solver 'rk99'.*" + ", ".join(SOLVERS)):
        get_solver("rk99")
    with pytest.raises(ValueError, match="twice"):
        register(next(iter(SOLVERS)), 1, "again")(lambda v, y, t0, t1, memory: y)
