"""Write-back math without Blender: frame mapping, keyframe values, PC2 files."""

import struct

import numpy as np
import pytest

from animateanymesh_addon import writeback as wb


def _frames(t=5, n=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(t, n, 3)).astype(np.float32)


def _eval_linear_fcurve(keys: np.ndarray, time: float) -> float:
    """What a Blender F-curve with linear interpolation and constant extrapolation gives."""
    return float(np.interp(time, keys[:, 0], keys[:, 1]))


def _eval_constant_fcurve(keys: np.ndarray, time: float) -> float:
    i = np.searchsorted(keys[:, 0], time, side="right") - 1
    return float(keys[max(i, 0), 1])


# ------------------------------------------------------------------------------ timeline

def test_timeline_maps_model_frames_to_scene_times():
    tl = wb.Timeline(frame_start=10, frame_step=2.5)
    np.testing.assert_allclose(tl.times(4), [10, 12.5, 15, 17.5])
    assert tl.frame_end(4) == 17.5
    assert tl.scene_range(4) == (10, 18)
    assert wb.Timeline(1, 1).scene_range(16) == (1, 16)


def test_frame_step_for_fps_plays_clip_at_requested_rate():
    assert wb.frame_step_for_fps(24, 8) == 3.0
    assert wb.frame_step_for_fps(30, 30) == 1.0
    # 16 frames at 8 fps inside a 24 fps scene last 2 s = 48 scene frames (45 steps + 1 frame)
    tl = wb.Timeline(1, wb.frame_step_for_fps(24, 8))
    assert tl.frame_end(16) - tl.frame_start == 45
    with pytest.raises(wb.WritebackError, match="positive frame rate"):
        wb.frame_step_for_fps(24, 0)


@pytest.mark.parametrize("step", [0, -1, float("nan")])
def test_timeline_rejects_bad_step(step):
    with pytest.raises(wb.WritebackError, match="frame_step"):
        wb.Timeline(1, step)


# ------------------------------------------------------------------------------ frames

def test_as_frames_checks_shape_count_and_values():
    f = _frames()
    out = wb.as_frames(f.astype(np.float64), 7)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    with pytest.raises(wb.WritebackError, match="has 7 vertices but the object has 8"):
        wb.as_frames(f, 8)
    with pytest.raises(wb.WritebackError, match=r"\(T, N, 3\)"):
        wb.as_frames(f[..., :2])
    bad = f.copy()
    bad[2, 3, 1] = np.nan
    with pytest.raises(wb.WritebackError, match="NaN"):
        wb.as_frames(bad)
    with pytest.raises(wb.WritebackError, match="no frame"):
        wb.as_frames(np.zeros((0, 4, 3)))


def test_anchor_to_rest_keeps_motion_and_starts_at_rest():
    f = _frames()
    rest = f[0] + 0.01  # the model's frame 0 is a slightly wrong reconstruction of the rest
    out = wb.anchor_to_rest(f, rest)
    np.testing.assert_allclose(out[0], rest, atol=1e-6)
    np.testing.assert_allclose(out - out[:1], f - f[:1], atol=1e-5)
    with pytest.raises(wb.WritebackError, match="rest coordinates"):
        wb.anchor_to_rest(f, rest[:3])


def test_split_frames_per_object():
    f = _frames(t=3, n=7)
    a, b, c = wb.split_frames(f, [2, 0, 5])
    assert a.shape == (3, 2, 3) and b.shape == (3, 0, 3) and c.shape == (3, 5, 3)
    np.testing.assert_array_equal(np.concatenate([a, b, c], axis=1), f)
    with pytest.raises(wb.WritebackError, match="6 vertices in all"):
        wb.split_frames(f, [2, 4])


def test_world_and_object_space_round_trip():
    angle = 0.7
    m = np.eye(4)
    m[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                          [0, 0, 1]]) @ np.diag([1.5, 0.8, 2.0])
    m[:3, 3] = [1, -2, 3]
    f = _frames()
    world = wb.to_world_space(f, m)
    np.testing.assert_allclose(world[1, 2], m[:3, :3] @ f[1, 2] + m[:3, 3], atol=1e-5)
    np.testing.assert_allclose(wb.to_object_space(world, m), f, atol=1e-5)
    flat = np.diag([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(wb.WritebackError, match="zero scale"):
        wb.to_object_space(world, flat)


# ------------------------------------------------------------------------------ keyframes

def test_keyframes_one_key_fully_on_per_frame_and_neighbours_off():
    t = 6
    tl = wb.Timeline(3, 2)
    keys = wb.shape_key_keyframes(t, tl)
    assert [k.shape[0] for k in keys] == [2, 3, 3, 3, 3, 2]
    times = tl.times(t)
    for i, k in enumerate(keys):
        values = np.array([_eval_linear_fcurve(k, x) for x in times])
        expected = np.zeros(t)
        expected[i] = 1
        np.testing.assert_array_equal(values, expected)
    # first key holds before the start, last key after the end (constant extrapolation)
    assert _eval_linear_fcurve(keys[0], -50) == 1 and _eval_linear_fcurve(keys[-1], 500) == 1
    assert _eval_linear_fcurve(keys[1], -50) == 0 and _eval_linear_fcurve(keys[-2], 500) == 0


def test_keyframes_single_frame_clip_is_always_on():
    keys = wb.shape_key_keyframes(1, wb.Timeline(1, 1))
    assert len(keys) == 1 and keys[0].tolist() == [[1.0, 1.0]]


@pytest.mark.parametrize("interpolation", wb.INTERPOLATIONS)
def test_key_weights_match_fcurves_and_sum_to_one(interpolation):
    t, tl = 5, wb.Timeline(1, 3)
    keys = wb.shape_key_keyframes(t, tl)
    evaluate = _eval_linear_fcurve if interpolation == "LINEAR" else _eval_constant_fcurve
    for time in np.linspace(-2, 18, 81):
        w = wb.key_weights_at(time, t, tl, interpolation)
        fc = np.array([evaluate(k, time) for k in keys])
        np.testing.assert_allclose(w, fc, atol=1e-12)
        assert w.sum() == pytest.approx(1.0)
        assert np.count_nonzero(w) <= 2


def test_positions_blend_neighbouring_frames_without_popping():
    f = _frames(t=4)
    tl = wb.Timeline(1, 2)
    np.testing.assert_allclose(wb.positions_at(f, 3, tl), f[1], atol=1e-6)
    np.testing.assert_allclose(wb.positions_at(f, 4, tl), 0.5 * (f[1] + f[2]), atol=1e-6)
    np.testing.assert_allclose(wb.positions_at(f, 4, tl, "CONSTANT"), f[1], atol=1e-6)
    np.testing.assert_allclose(wb.positions_at(f, -10, tl), f[0], atol=1e-6)
    np.testing.assert_allclose(wb.positions_at(f, 99, tl), f[3], atol=1e-6)
    # continuity: a small step in time moves the mesh a little (no pop at the frame boundary)
    a, b = wb.positions_at(f, 4.999, tl), wb.positions_at(f, 5.001, tl)
    assert np.abs(a - b).max() < 1e-2


def test_shape_key_names_sort_and_are_recognised():
    names = wb.shape_key_names("AAM", 12)
    assert names[:2] == ["AAM_000", "AAM_001"] and names == sorted(names)
    assert wb.shape_key_names("AAM", 1500)[-1] == "AAM_1499"
    assert all(wb.is_our_key_name(n, "AAM") for n in names)
    assert not wb.is_our_key_name("Basis", "AAM")
    assert not wb.is_our_key_name("AAM_smile", "AAM")
    assert not wb.is_our_key_name("XAAM_000", "AAM")
    with pytest.raises(wb.WritebackError, match="prefix"):
        wb.shape_key_names('bad"prefix', 3)


def test_mesh_cache_settings_read_the_right_sample():
    # Blender reads sample scene_frame * frame_scale - frame_start (measured in 5.0)
    tl = wb.Timeline(5, 2)
    s = wb.mesh_cache_settings(tl)
    for i, time in enumerate(tl.times(4)):
        assert time * s["frame_scale"] - s["frame_start"] == pytest.approx(i)


# ------------------------------------------------------------------------------ PC2

def test_pc2_round_trip_and_exact_layout(tmp_path):
    f = _frames(t=3, n=4)
    path = wb.write_pc2(tmp_path / "a.pc2", f, start_frame=5, sample_rate=0.5)
    raw = path.read_bytes()
    assert len(raw) == 32 + 3 * 4 * 12
    magic, version, points, start, rate, samples = struct.unpack("<12siiffi", raw[:32])
    assert (magic, version, points, start, rate, samples) == (b"POINTCACHE2\0", 1, 4, 5.0, 0.5, 3)
    # sample-major, then point, then xyz, little-endian float32
    assert struct.unpack("<3f", raw[32 + 12 * 5:32 + 12 * 6]) == tuple(f[1, 1].tolist())
    back, header = wb.read_pc2(path)
    np.testing.assert_array_equal(back, f)
    assert header == wb.Pc2Header(4, 5.0, 0.5, 3)
    assert not list(tmp_path.glob("*.tmp"))


def test_pc2_replace_is_atomic_and_reader_rejects_bad_files(tmp_path):
    path = tmp_path / "a.pc2"
    wb.write_pc2(path, _frames(t=2, n=3))
    wb.write_pc2(path, _frames(t=4, n=3, seed=1))
    assert wb.read_pc2(path)[0].shape == (4, 3, 3)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(wb.WritebackError, match="truncated"):
        wb.read_pc2(path)
    (tmp_path / "b.pc2").write_bytes(b"NOTACACHE" + bytes(40))
    with pytest.raises(wb.WritebackError, match="not a PC2"):
        wb.read_pc2(tmp_path / "b.pc2")
    with pytest.raises(wb.WritebackError, match="does not exist"):
        wb.write_pc2(tmp_path / "missing" / "c.pc2", _frames())


def test_pc2_large_cache_is_header_plus_raw_samples(tmp_path):
    f = np.zeros((64, 50_000, 3), np.float32)
    wb.write_pc2(tmp_path / "big.pc2", f)
    assert (tmp_path / "big.pc2").stat().st_size == 32 + f.nbytes


def test_writeback_imports_without_blender():
    """The package __init__ and writeback must not pull bpy (or torch) in."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, animateanymesh_addon.writeback; "
            "bad = [m for m in ('bpy', 'torch') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_length_in_seconds_becomes_model_frames_at_the_scene_rate():
    from animateanymesh_addon.writeback import WritebackError, frames_for_seconds

    assert frames_for_seconds(2.0, 24.0) == 49          # 48 steps of one scene frame
    assert frames_for_seconds(2.0, 24.0, 2.0) == 25     # a model frame every 2 scene frames
    assert frames_for_seconds(0.01, 24.0) == 2          # never shorter than a start and an end
    with pytest.raises(WritebackError, match="positive"):
        frames_for_seconds(0.0, 24.0)
