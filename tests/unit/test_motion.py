"""Motion strength scales the take around its first frame; weak takes are named."""

from __future__ import annotations

import numpy as np

from backend.motion import peak_motion, scale_motion, weak_take_warning


def take(amplitude: float):
    rest = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    t = np.linspace(0, 1, 16, dtype=np.float32)[:, None, None]
    wave = np.sin(6.28 * t) * np.array([0, 0, amplitude], np.float32)
    return rest[None] + wave * np.array([[0], [1], [1], [0]], np.float32)


def test_strength_scales_every_displacement_and_keeps_the_first_pose():
    frames = take(0.5)
    doubled = scale_motion(frames, 2.0)
    np.testing.assert_allclose(doubled[0], frames[0])
    np.testing.assert_allclose(doubled - doubled[:1], 2 * (frames - frames[:1]), atol=1e-6)
    np.testing.assert_allclose(scale_motion(frames, 0.0), np.repeat(frames[:1], 16, axis=0))
    assert abs(peak_motion(doubled) - 2 * peak_motion(frames)) < 1e-6


def test_a_take_under_two_percent_of_the_mesh_size_is_called_weak():
    diagonal = np.sqrt(3)
    assert weak_take_warning(take(0.5)) is None
    warning = weak_take_warning(take(0.01 * diagonal))
    assert warning is not None and "1.0%" in warning and "another seed" in warning
    assert peak_motion(np.zeros((4, 3, 3))) == 0.0
