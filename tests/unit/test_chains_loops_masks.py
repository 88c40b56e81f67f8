"""The maths of chained segments, loops and masks, on synthetic clips (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from backend import joins, loops, masks
from backend.retime import retime_loop


def wave(t0, t1, n=6, phase=0.0, seed=0):
    """A smooth clip: each vertex follows its own sine; frames t0..t1 of it."""
    rng = np.random.default_rng(seed)
    rest = rng.normal(size=(n, 3))
    amp = rng.uniform(0.2, 0.5, size=(n, 3))
    t = np.arange(t0, t1 + 1, dtype=np.float64)[:, None, None]
    return rest + amp * np.sin(0.35 * t + phase + np.arange(3))


def velocity_change(clip, frame):
    x = np.asarray(clip, dtype=np.float64)
    return np.linalg.norm(x[frame + 1] - 2 * x[frame] + x[frame - 1], axis=-1).mean()


def second_difference(clip, frame):
    x = np.asarray(clip, dtype=np.float64)
    return x[(frame + 1) % len(x)] - 2 * x[frame] + x[frame - 1]


def test_a_joined_seam_keeps_the_meeting_pose_and_carries_the_motion_on():
    a = wave(0, 15)
    b = wave(0, 15, phase=2.0, seed=1)          # starts elsewhere, moving another way
    b = b - b[0] + a[-1] + 0.01                 # near the end pose, as the decoder leaves it
    clip, seams = joins.join_segments([a, b])
    assert clip.shape[0] == 31 and seams == [15]
    np.testing.assert_array_equal(clip[:16], a)                    # the first segment as it was
    raw = np.concatenate([a, (b - b[0] + a[-1])[1:]])
    assert velocity_change(raw, 15) > 0.05                         # the jump it removed
    assert velocity_change(clip, 15) < 1e-9                        # the same velocity on both sides
    # the difference fades evenly: every later frame gains the same small acceleration
    added = (clip - raw)[16:]
    second = np.diff(added, n=2, axis=0)
    np.testing.assert_allclose(second, np.broadcast_to(second[:1], second.shape), atol=1e-12)
    assert np.linalg.norm(second[0], axis=-1).mean() < velocity_change(raw, 15) / 10
    steps = np.linalg.norm(np.diff(clip - raw, axis=0)[15:], axis=-1).mean(-1)
    assert steps[-1] < 0.1 * steps[0]          # ... and has died out by the segment's end
    assert joins.seam_jump_ratio(clip, seams) < 1e-6 < 1.5 < joins.seam_jump_ratio(raw, seams)


def test_a_closed_loop_changes_velocity_at_the_wrap_like_beside_it():
    x = wave(0, 14)
    x = x - np.linspace(0, 1, 15)[:, None, None] * (x[-1] - x[0]) * 15 / 14  # wraps in position
    looped = joins.close_velocity(x)
    changes = np.linalg.norm([second_difference(looped, f) for f in range(15)], axis=-1)  # (15, N)
    assert np.all(changes[0] <= 1.05 * np.median(changes, axis=0))   # no vertex jumps at the wrap
    raw = np.linalg.norm(second_difference(x, 0), axis=-1)
    assert np.all(raw > 2 * np.median(changes, axis=0))                 # ... as all did before
    np.testing.assert_array_equal(looped[0], x[0])
    t = np.arange(24, dtype=np.float64)[:, None, None]
    cycle = np.sin(2 * np.pi * t / 24 + np.arange(3))               # a loop that already closes
    assert np.abs(joins.close_velocity(cycle) - cycle).max() < 0.005  # is left nearly alone


@pytest.mark.parametrize("name", sorted(loops.LOOPS))
def test_every_loop_method_closes_position_and_velocity(name):
    method = loops.LOOPS[name]
    length = 16
    # a cycle that also drifts and whose period does not fit the clip: the hard case
    clip = wave(0, length - 1 + (length - 1) * method.extra_segments)
    clip = clip + np.linspace(0, 0.4, clip.shape[0])[:, None, None]
    out = method.close(clip, length)
    assert out.shape[1:] == clip.shape[1:] and out.shape[0] >= length - 1
    period = out.shape[0]
    unrolled = np.concatenate([out, out[:2]])
    changes = [velocity_change(unrolled, f) for f in range(1, period + 1)]
    assert changes[-1] < 1.5 * np.median(changes)    # the wrap is like any other frame
    if name != "blend":  # blending keeps the swing only of a take that completes its cycle
        assert loops.in_place_range(out) > 0.7 * loops.in_place_range(clip[:length])


def test_crossfade_leaves_no_kink_where_the_fade_ends():
    clip = wave(0, 30) + np.linspace(0, 0.4, 31)[:, None, None]
    out = loops.close_by_crossfade(clip, 16)
    unrolled = np.concatenate([out, out[:2]])
    changes = [velocity_change(unrolled, f) for f in range(1, out.shape[0] + 1)]
    assert max(changes) < 1.5 * np.median(changes)


def test_pingpong_keeps_the_swing_of_a_one_way_motion_and_rests_at_the_turns():
    rest = np.random.default_rng(2).normal(size=(6, 3))
    swell = rest[None] * (1 + 0.5 * np.linspace(0, 1, 16))[:, None, None]   # grows, never returns
    blended = loops.close_by_blending(swell, 16)
    assert loops.in_place_range(blended) < 0.6 * loops.in_place_range(swell)  # blending flattens it
    out = loops.close_by_pingpong(swell, 16)
    assert out.shape[0] == 30
    np.testing.assert_allclose(out[[0, 15]], swell[[0, 15]], atol=1e-6)      # both extremes reached
    step = np.linalg.norm(np.diff(np.concatenate([out, out[:1]]), axis=0), axis=-1).mean(-1)
    assert step[[0, 14, 15, 29]].max() < 0.15 * step.max()                    # at rest at the turns
    np.testing.assert_array_equal(loops.close_automatically(swell, 16), out)
    t = np.arange(16, dtype=np.float64)[:, None, None]
    cycle = rest + 0.4 * np.sin(2 * np.pi * t / 15 + np.arange(3))        # completes its cycle
    np.testing.assert_array_equal(loops.close_automatically(cycle, 16), loops.close_by_blending(cycle, 16))


def test_match_loops_between_the_poses_that_repeat():
    t = np.arange(31, dtype=np.float64)[:, None, None]
    rest = np.random.default_rng(4).normal(size=(1, 6, 3))
    clip = rest + np.sin(2 * np.pi * t / 12 + np.arange(3))      # a 12-frame cycle, 31 frames
    assert loops.best_cut(clip, 15) in [(s, s + 24) for s in range(7)]
    out = loops.close_by_matching(clip, 16)
    assert out.shape[0] == 24
    start = loops.best_cut(clip, 15)[0]
    np.testing.assert_allclose(out, clip[start:start + 24], atol=0.02)  # a true cycle is kept (nearly) as is


def test_loop_methods_are_the_ones_both_halves_offer():
    from aam_seam.limits import DEFAULT_LOOP, LOOP_METHODS

    assert set(loops.LOOPS) == set(LOOP_METHODS) and DEFAULT_LOOP in LOOP_METHODS


def test_a_retimed_loop_follows_the_cycle_across_the_wrap():
    phase = 2 * np.pi * np.arange(15) / 15                    # one cycle in 15 frames
    loop = np.stack([np.cos(phase), np.sin(phase), 0 * phase], -1)[:, None, :]
    dense = retime_loop(loop, 60)
    assert dense.shape == (60, 1, 3)
    np.testing.assert_allclose(dense[::4], loop, atol=1e-6)      # the loop's own frames kept
    fine = 2 * np.pi * np.arange(60) / 60
    truth = np.stack([np.cos(fine), np.sin(fine), 0 * fine], -1)[:, None, :]
    assert np.abs(dense - truth).max() < 2e-3                   # smooth, also next to the wrap


def grid(n=8):
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    points = np.stack([xs, ys, np.zeros_like(xs)], -1).reshape(-1, 3).astype(np.float64)
    right = [(i * n + j, i * n + j + 1) for i in range(n) for j in range(n - 1)]
    down = [(i * n + j, (i + 1) * n + j) for i in range(n - 1) for j in range(n)]
    edges = np.array(right + down)
    return points, np.concatenate([edges, edges[:, ::-1]])


def test_pinned_vertices_stay_exactly_at_rest_and_free_ones_move_fully():
    points, _ = grid()
    rng = np.random.default_rng(0)
    frames = points[None] + rng.normal(size=(5,) + points.shape)
    weights = (points[:, 0] >= 4).astype(np.float64)
    out = masks.apply_mask(frames, weights, anchor=points)
    np.testing.assert_array_equal(out[:, weights == 0], np.broadcast_to(points[weights == 0], (5, 32, 3)))
    np.testing.assert_allclose(out[:, weights == 1], frames[:, weights == 1])


def test_falloff_follows_the_surface_and_keeps_the_pinned_part_pinned():
    points, edges = grid()
    weights = (points[:, 0] >= 2).astype(np.float64)
    soft = masks.soften(weights, points, edges, radius=3.0)
    assert np.all(soft[weights == 0] == 0)
    ramp = soft.reshape(8, 8)[0]                 # along a row: 0 0 then rising, then 1
    assert np.all(np.diff(ramp) >= 0) and np.all(ramp[:2] == 0) and 0 < ramp[2] < ramp[3] < 1
    assert np.all(ramp[4:] == 1)
    # along the surface, not through space: a U-shaped strip whose arms touch in space
    u = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 1, 0], [1, 1, 0], [0, 1, 0]], float) * [1, 0.1, 1]
    chain = np.array([[i, i + 1] for i in range(5)])
    dist = masks.surface_distance(u, np.concatenate([chain, chain[:, ::-1]]), np.arange(6) == 0, 10)
    assert dist[5] > 4 * np.linalg.norm(u[5] - u[0])


def test_welded_twins_take_the_smaller_weight():
    to_original = np.array([0, 1, 1, 2])      # caller vertices 1 and 2 were welded into row 1
    weights = masks.welded_weights(to_original, np.array([1.0, 0.0, 1.0, 0.5]), 3)
    np.testing.assert_array_equal(weights, [1.0, 0.0, 0.5])


def test_border_distortion_is_measured_on_edges_that_cross_the_mask():
    points, edges = grid()
    frames = np.stack([points, points + [0, 0, 1.0]])      # everything lifts by 1
    weights = (points[:, 0] >= 4).astype(np.float64)
    hard = masks.apply_mask(frames, weights, anchor=points)
    soft = masks.apply_mask(frames, masks.soften(weights, points, edges, 3.0), anchor=points)
    assert masks.border_distortion(frames, edges, weights) == 0
    assert masks.border_distortion(hard, edges, weights) > masks.border_distortion(
        soft, edges, masks.soften(weights, points, edges, 3.0))
