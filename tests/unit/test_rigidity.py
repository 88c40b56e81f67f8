"""Keep Shape (backend/rigidity.py): the as-rigid-as-possible projection of generated frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend import rigidity
from backend.evaluate import edge_distortion
from backend.mesh import adjacency_edges


def tube(rings=12, around=16):
    """A closed-ish cylinder of quads split into triangles: long enough to bend and twist."""
    angle = np.linspace(0, 2 * np.pi, around, endpoint=False)
    verts = np.array([[np.cos(a) * 0.3, np.sin(a) * 0.3, z] for z in np.linspace(0, 2, rings) for a in angle])
    faces = []
    for r in range(rings - 1):
        for i in range(around):
            a, b = r * around + i, r * around + (i + 1) % around
            faces += [[a, b, b + around], [a, b + around, a + around]]
    faces = np.array(faces)
    return verts, adjacency_edges(faces, len(verts))


def rotation_z(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def spin(verts, frames=12, shrink=0.0, noise=0.0, seed=0):
    """A half turn about z, optionally shrinking towards the axis mid-turn and with noise."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(frames):
        angle = np.pi * t / (frames - 1)
        squeeze = np.array([1 - shrink * np.sin(angle)] * 2 + [1.0])
        jitter = noise * rng.standard_normal(verts.shape) if t else 0.0
        out.append((verts @ rotation_z(angle).T) * squeeze + [0.2 * t, 0, 0] + jitter)
    return np.stack(out)


def test_a_rigid_motion_comes_back_as_it_went_in():
    verts, edges = tube()
    clip = spin(verts)
    result = rigidity.keep_shape(clip, edges, "on")
    assert result.applied
    np.testing.assert_allclose(result.frames.numpy(), clip, atol=2e-4)


def test_a_stretching_spin_keeps_its_turn_and_loses_its_stretch():
    verts, edges = tube()
    clip = spin(verts, shrink=0.08, noise=0.004)
    result = rigidity.keep_shape(clip, edges, "auto")
    out = result.frames.numpy()
    assert result.applied
    before, after = edge_distortion(clip, edges), edge_distortion(out, edges)
    assert before > 0.03 and after < before / 4
    # the turn and the travel survive: the centroid path and the far end's angle barely move
    np.testing.assert_allclose(out.mean(1), clip.mean(1), atol=0.01)
    top = out[-1, -16:] - out[-1, -16:].mean(0)
    expected = (verts[-16:] - verts[-16:].mean(0)) @ rotation_z(np.pi).T
    assert np.abs(top - expected).max() < 0.02
    assert rigidity.peak_displacement(result.frames) == pytest.approx(rigidity.peak_displacement(torch.tensor(clip)),
                                                                     rel=0.02)


def test_auto_leaves_a_deformation_alone_and_on_flattens_it():
    verts, edges = tube()
    grow = np.stack([verts * (1 + 0.5 * t / 11) for t in range(12)])
    auto = rigidity.keep_shape(grow, edges, "auto")
    assert not auto.applied and auto.change > rigidity.AUTO_CHANGE
    np.testing.assert_array_equal(auto.frames.numpy(), grow.astype(np.float32))
    on = rigidity.keep_shape(grow, edges, "on")
    assert on.applied and edge_distortion(on.frames.numpy(), edges) < edge_distortion(grow, edges) / 2


def test_mirrored_fans_are_fitted_with_rotations_not_reflections():
    verts, edges = tube()
    flat = verts.copy()
    flat[:, 1] = 0.0                      # every fan collapses onto a plane: SVDs near reflections
    clip = np.stack([verts, flat, verts * [1, -1, 1]])
    out = rigidity.arap_project(torch.tensor(clip), edges).numpy()
    assert np.isfinite(out).all()
    rot = rigidity._best_rotations(torch.tensor(verts), torch.tensor(verts * [1, -1, 1])[None],
                                   *rigidity._adjacency(edges, len(verts), torch.float64))
    assert torch.allclose(torch.linalg.det(rot), torch.ones(()).double(), atol=1e-6)


def test_off_points_and_single_frames_come_back_untouched():
    verts, edges = tube()
    clip = spin(verts, shrink=0.1)
    for frames, mode, edge_list in ((clip, "off", edges), (clip, "on", np.zeros((0, 2), int)),
                                    (clip[:1], "on", edges)):
        result = rigidity.keep_shape(frames, edge_list, mode)
        assert not result.applied
        np.testing.assert_array_equal(result.frames.numpy(), frames.astype(np.float32))
    with pytest.raises(ValueError, match="keep shape mode 'rigid'"):
        rigidity.keep_shape(clip, edges, "rigid")


def test_progress_is_reported_and_a_raise_cancels():
    verts, edges = tube()
    seen = []
    rigidity.keep_shape(spin(verts), edges, "on", step=lambda done, total: seen.append((done, total)))
    assert seen == [(i, rigidity.ITERATIONS) for i in range(rigidity.ITERATIONS + 1)]

    def cancel(done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rigidity.keep_shape(spin(verts), edges, "on", step=cancel)
