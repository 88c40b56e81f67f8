"""A solver added to the registry reaches every surface without touching another file."""

from __future__ import annotations

import io

import pytest
import torch

from aam_seam import protocol
from backend import solvers
from backend.sampling import Cancelled, integrate, time_grid


@pytest.fixture
def toy_solver():
    """Heun's method as a toy solver, in the registry for the test only."""

    @solvers.register("toy-heun", 2, "Heun's method, for this test")
    def heun(velocity, y, t0, t1, memory):
        k1 = velocity(y, t0)
        k2 = velocity(y + (t1 - t0) * k1, t1)
        return y + 0.5 * (t1 - t0) * (k1 + k2)

    yield "toy-heun"
    del solvers.SOLVERS["toy-heun"]


def test_a_registered_solver_is_offered_by_the_cli_and_the_ready_message(toy_solver):
    from backend.__main__ import build_parser
    from backend.server import Channel, Server

    args = build_parser().parse_args(["animate", "m.obj", "--prompt", "p", "--out", "o.npz",
                                      "--solver", toy_solver])
    assert args.solver == toy_solver
    out = io.BytesIO()
    server = Server(Channel(out))
    server.handle(protocol.Hello(client="test"))
    ready = protocol.parse_line(out.getvalue().decode().splitlines()[0])
    assert [s["name"] for s in ready.solvers] == list(solvers.SOLVERS)
    assert {"name": toy_solver, "evaluations_per_step": 2,
            "description": "Heun's method, for this test"} in ready.solvers


def test_integrate_runs_the_named_solver_and_reports_every_evaluation(toy_solver):
    reports = []
    y = integrate(lambda x, t: -x, torch.ones(2), time_grid(9), toy_solver,
                  on_step=lambda done, total: reports.append((done, total)))
    assert reports == [(i, 16) for i in range(1, 17)]
    assert torch.allclose(y, torch.full((2,), torch.e ** -1), atol=5e-3)

    def cancel_at_third(done, _total):
        if done == 3:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        integrate(lambda x, t: -x, torch.ones(2), time_grid(9), "euler", on_step=cancel_at_third)
