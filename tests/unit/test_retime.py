"""Retiming keeps the model's frames, its span, and a continuous velocity."""

from __future__ import annotations

import numpy as np

from backend.retime import retime


def clip(t=16, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(t, n, 3)), axis=0).astype(np.float32)


def test_the_ends_and_every_original_frame_are_kept():
    frames = clip()
    out = retime(frames, 61)  # 4 new frames between each pair: originals at every 4th
    assert out.shape == (61, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[::4], frames, atol=1e-5)
    np.testing.assert_array_equal(retime(frames, 16), frames)
    np.testing.assert_allclose(retime(frames, 7)[[0, -1]], frames[[0, -1]], atol=1e-5)


def test_velocity_is_continuous_where_linear_keys_would_kink():
    frames = clip(seed=3)
    dense = retime(frames, 15 * 50 + 1)  # 50 samples per original step
    velocity = np.diff(dense, axis=0)
    jumps = np.abs(np.diff(velocity, axis=0)).max(axis=(1, 2))
    at_originals = jumps[49::50]  # the velocity change across each original frame
    typical = np.median(jumps)
    assert at_originals.max() < 5 * typical
    # linear interpolation, for contrast, changes velocity only at the originals
    position = np.linspace(0, 15, dense.shape[0])
    lo = np.minimum(position.astype(int), 14)
    w = (position - lo)[:, None, None]
    linear = frames[lo] * (1 - w) + frames[lo + 1] * w
    linear_jumps = np.abs(np.diff(np.diff(linear, axis=0), axis=0)).max(axis=(1, 2))
    assert linear_jumps[49::50].max() > 20 * at_originals.max()


def test_a_still_clip_stays_still_and_one_frame_is_repeated():
    still = np.repeat(clip()[:1], 16, axis=0)
    np.testing.assert_allclose(retime(still, 40), still[:1].repeat(40, axis=0), atol=1e-6)
    np.testing.assert_array_equal(retime(clip()[:1], 3), clip()[:1].repeat(3, axis=0))
