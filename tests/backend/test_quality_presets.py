"""A quality preset runs its schedule through the pipeline, the server and the command line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from backend.errors import UserError
from backend.mesh_io import save_obj
from backend.model_folder import load_model
from backend.pipeline import animate

VERTS = np.random.default_rng(0).normal(size=(40, 3))


def sampled_evaluations(model, **options) -> int:
    seen = []
    animate(VERTS, None, "a blob wobbles", model=model, seed=3, num_traj=16,
            progress=lambda stage, done, total: seen.append(total) if stage == "sample" else None,
            **options)
    return seen[-1]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def test_each_preset_spends_its_evaluations_and_explicit_steps_win(model):
    assert sampled_evaluations(model, quality="draft") == 8
    assert sampled_evaluations(model) == sampled_evaluations(model, quality="standard") == 16
    reference = model.config.sampler
    expected = (reference.steps - 1) * (2 if reference.solver == "midpoint" else 1)
    assert sampled_evaluations(model, quality="reference") == expected
    assert sampled_evaluations(model, quality="draft", steps=5, solver="euler") == 4
    draft = animate(VERTS, None, "a blob wobbles", model=model, seed=3, num_traj=16, quality="draft")
    again = animate(VERTS, None, "a blob wobbles", model=model, seed=3, num_traj=16, quality="draft")
    np.testing.assert_array_equal(draft.frames, again.frames)
    with pytest.raises(UserError, match="unknown quality"):
        animate(VERTS, None, "a blob wobbles", model=model, quality="ultra")


def test_the_preset_grid_reaches_the_sampler(model, monkeypatch):
    import backend.pipeline as pipeline
    from backend.quality import SCHEDULES

    seen = []
    real = pipeline.sample_trajectory_latent

    def spy(*args, **kwargs):
        seen.append((kwargs["solver"], kwargs["steps"], kwargs["shift"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "sample_trajectory_latent", spy)
    animate(VERTS, None, "a blob wobbles", model=model, seed=3, num_traj=16, quality="draft")
    animate(VERTS, None, "a blob wobbles", model=model, seed=3, num_traj=16, steps=5)
    draft = SCHEDULES["draft"]
    assert seen == [(draft.solver, draft.steps, draft.shift), (model.config.sampler.solver, 5, 1.0)]


def test_the_command_line_takes_a_quality(tmp_path, tiny_model_dir):
    mesh = tmp_path / "blob.obj"
    save_obj(mesh, VERTS, None)
    ok = subprocess.run([sys.executable, "-m", "backend", "animate", str(mesh), "--prompt", "a blob wobbles",
                         "--quality", "draft", "--num-traj", "16", "--model", str(tiny_model_dir),
                         "--out", str(tmp_path / "o.npz")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "backend", "animate", str(mesh), "--prompt", "x",
                          "--quality", "ultra", "--out", str(tmp_path / "o.npz")], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'ultra'" in bad.stderr
