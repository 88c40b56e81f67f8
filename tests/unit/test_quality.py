"""Quality presets pick a sampling schedule; explicit steps / solver replace it."""

from __future__ import annotations

import pytest
import torch

from aam_seam import limits
from aam_seam.codes import SeamError
from backend.config import SamplerDefaults
from backend.quality import SCHEDULES, Schedule, schedule_for
from backend.sampling import evaluations_per_run, time_grid
from backend.solvers import SOLVERS

MODEL = SamplerDefaults(steps=64, guidance=3.0, solver="midpoint")  # the official schedule


def test_presets_are_the_ones_both_halves_offer_and_cost_what_they_promise():
    assert set(SCHEDULES) == set(limits.QUALITY_PRESETS) and limits.DEFAULT_QUALITY in SCHEDULES
    draft, standard = schedule_for("draft", MODEL), schedule_for("standard", MODEL)
    assert evaluations_per_run(draft.steps, draft.solver) <= 8
    assert evaluations_per_run(standard.steps, standard.solver) <= 16
    assert all(s.solver in SOLVERS for s in SCHEDULES.values() if s)


def test_reference_is_the_models_schedule_and_the_default_is_standard():
    assert schedule_for("reference", MODEL) == Schedule("midpoint", 64, 1.0)
    assert schedule_for(None, MODEL) == schedule_for(limits.DEFAULT_QUALITY, MODEL) == SCHEDULES["standard"]


def test_explicit_steps_or_solver_replace_the_preset_on_the_uniform_grid():
    assert schedule_for("draft", MODEL, steps=33) == Schedule("midpoint", 33, 1.0)
    assert schedule_for("standard", MODEL, solver="euler") == Schedule("euler", 64, 1.0)
    assert schedule_for(None, MODEL, steps=5, solver="ab2") == Schedule("ab2", 5, 1.0)


def test_the_warped_grid_keeps_its_ends_and_puts_short_steps_near_the_data():
    uniform, warped = time_grid(9), time_grid(9, 2.0)
    assert torch.equal(time_grid(9, 1.0), torch.linspace(0, 1, 9))
    assert warped[0] == 0 and warped[-1] == 1 and torch.all(torch.diff(warped) > 0)
    steps = torch.diff(warped)
    assert steps[0] > torch.diff(uniform)[0] > steps[-1]


def test_an_unknown_quality_is_refused_with_the_choices():
    with pytest.raises(SeamError, match="unknown quality 'best'.*draft, standard, reference"):
        limits.check_request_values(quality="best")
