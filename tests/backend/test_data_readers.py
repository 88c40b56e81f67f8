"""Dataset readers, the sample type, shards and the Blender scene exporter.

Pure numpy tests first (DyMesh .bin with the restricted unpickler, DeformingThings4D .anime,
resampling, vertex budget, shards), then one real-Blender test (bpy wheel in a subprocess) that
exports an armature-animated and a shape-key-animated mesh and reads the shard back.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.data import (
    DatasetError, MotionSample, UnsafePickleError, apply_vertex_budget, iter_dataset, read_anime,
    read_dymesh_bin, read_shard, resample_frames, write_anime, write_shard,
)
from backend.data.captions import caption_from_clip_name
from backend.data.geometry import uv_sphere
from backend.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def _clip(T=5, N=8, F=6, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.normal(size=(T, N, 3)).astype(np.float32)
    faces = rng.integers(0, N, size=(F, 3)).astype(np.int64)
    return frames, faces


def test_data_package_is_numpy_only():
    code = ("import sys, backend.data, backend.data.procedural, backend.data.shards\n"
            "print(sorted(m for m in ('torch', 'bpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# DyMesh .bin
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_dymesh_round_trip(tmp_path, protocol):
    frames, faces = _clip(T=20, N=50, F=90)
    path = tmp_path / "clip.bin"
    path.write_bytes(pickle.dumps({"vertices": frames, "faces": faces, "caption": "a cube spins",
                                   "extra": [1, 2.5, None, True, (3, "x")]}, protocol=protocol))
    s = read_dymesh_bin(path)
    assert s.frames.dtype == np.float32 and s.faces.dtype == np.int64
    np.testing.assert_array_equal(s.frames, frames)
    np.testing.assert_array_equal(s.faces, faces)
    assert s.captions == ["a cube spins"] and s.family is None
    assert s.source == f"dymesh:{path}" and s.meta["extra_keys"] == ["extra"]


def test_dymesh_from_either_numpy_major_version(tmp_path):
    """numpy 1 pickles name numpy.core.*, numpy 2 pickles numpy._core.*: both must load."""
    frames, faces = _clip()
    data = pickle.dumps({"vertices": frames, "faces": faces, "fps": np.float32(24)}, protocol=2)
    for core in (b"numpy.core", b"numpy._core"):
        renamed = data.replace(b"numpy._core.", core + b".").replace(b"numpy.core.", core + b".")
        assert core + b".multiarray\n_reconstruct" in renamed  # protocol 2 spells module names
        path = tmp_path / "clip.bin"
        path.write_bytes(renamed)
        s = read_dymesh_bin(path)
        np.testing.assert_array_equal(s.frames, frames)
        np.testing.assert_array_equal(s.faces, faces)


def test_dymesh_caption_list_missing_caption_and_face_padding(tmp_path):
    frames, faces = _clip()
    padded = np.concatenate([faces, -np.ones((3, 3), np.int64)])
    p1 = tmp_path / "a.bin"
    p1.write_bytes(pickle.dumps({"vertices": frames.astype(np.float64), "faces": padded,
                                 "caption": ["one", "two", " "]}))
    s = read_dymesh_bin(p1)
    assert s.captions == ["one", "two"]
    np.testing.assert_array_equal(s.faces, faces)  # -1 padding rows dropped
    p2 = tmp_path / "b.bin"
    p2.write_bytes(pickle.dumps({"vertices": frames[0], "faces": faces}))
    s2 = read_dymesh_bin(p2)
    assert s2.captions == [] and s2.frames.shape == (1, 8, 3)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("make", [
    lambda m: _Evil(m),
    lambda m: {"vertices": np.zeros((2, 3, 3)), "faces": np.zeros((1, 3), int), "caption": _Evil(m)},
    lambda m: [_EvilEval(m)],
    lambda m: {"vertices": np.array([_Evil(m)], dtype=object), "faces": []},
])
def test_malicious_pickle_is_refused_without_running(tmp_path, make):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(make(marker)))
    with pytest.raises(UnsafePickleError, match="refused to load") as info:
        read_dymesh_bin(path)
    assert isinstance(info.value, UserError) and info.value.code == "unsafe_dataset_file"
    assert not marker.exists()


def test_pickled_class_instance_and_truncated_pickle(tmp_path):
    p = tmp_path / "obj.bin"
    p.write_bytes(pickle.dumps({"vertices": np.zeros((1, 3, 3)), "faces": [], "x": Path("/")}))
    with pytest.raises(UnsafePickleError, match="pathlib"):
        read_dymesh_bin(p)
    frames, faces = _clip()
    data = pickle.dumps({"vertices": frames, "faces": faces})
    t = tmp_path / "cut.bin"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="not a readable pickle") as info:
        read_dymesh_bin(t)
    assert not isinstance(info.value, UnsafePickleError)
    n = tmp_path / "list.bin"
    n.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DatasetError, match="expected a dict"):
        read_dymesh_bin(n)


# ---------------------------------------------------------------------------------------------
# DeformingThings4D .anime
# ---------------------------------------------------------------------------------------------


def _write_anime_by_hand(path: Path, frames: np.ndarray, faces: np.ndarray):
    nf, nv, _ = frames.shape
    with open(path, "wb") as fh:
        np.array([nf, nv, len(faces)], dtype="<i4").tofile(fh)
        frames[0].astype("<f4").tofile(fh)
        faces.astype("<i4").tofile(fh)
        (frames[1:] - frames[0]).astype("<f4").tofile(fh)


def test_anime_round_trip_and_caption_from_folder(tmp_path):
    frames, faces = _clip(T=7, N=30, F=40)
    folder = tmp_path / "bear3EP_Jump"
    folder.mkdir()
    path = folder / "bear3EP_Jump.anime"
    _write_anime_by_hand(path, frames, faces)
    s = read_anime(path)
    np.testing.assert_allclose(s.frames, frames, atol=1e-6)  # frame 0 + float32 offsets
    np.testing.assert_array_equal(s.frames[0], frames[0])
    np.testing.assert_array_equal(s.faces, faces)
    assert s.captions == ["a bear jumps"] and s.source.startswith("dt4d:")
    assert read_anime(path, caption="custom").captions == ["custom"]
    # the library writer produces the same bytes as the format description
    other = tmp_path / "x.anime"
    write_anime(other, frames, faces)
    assert other.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("name, caption", [
    ("bear3EP_Jump", "a bear jumps"),
    ("deer2MB_GetHit", "a deer gets hit"),
    ("elk_Walk", "an elk walks"),
    ("rabbit7L6_idle2", "a rabbit stands idle"),
    ("foxXAT_Actions0", "a fox actions"),
    ("canieMHU_RunBack", "a dog runs back"),
    ("tigerD8H", "a tiger moves"),
])
def test_caption_from_clip_name(name, caption):
    assert caption_from_clip_name(name) == caption


def test_anime_truncated_and_bad_files(tmp_path):
    frames, faces = _clip(T=4, N=10, F=5)
    good = tmp_path / "good.anime"
    _write_anime_by_hand(good, frames, faces)
    data = good.read_bytes()
    cut = tmp_path / "cut.anime"
    cut.write_bytes(data[:-7])
    with pytest.raises(DatasetError, match="truncated"):
        read_anime(cut)
    tiny = tmp_path / "tiny.anime"
    tiny.write_bytes(data[:5])
    with pytest.raises(DatasetError, match="too short"):
        read_anime(tiny)
    long = tmp_path / "long.anime"
    long.write_bytes(data + b"\0" * 4)
    with pytest.raises(DatasetError, match="longer than its header"):
        read_anime(long)
    bad = tmp_path / "bad.anime"
    bad.write_bytes(np.array([0, 10, 5], "<i4").tobytes())
    with pytest.raises(DatasetError, match="nf >= 1"):
        read_anime(bad)
    badidx = tmp_path / "idx.anime"
    _write_anime_by_hand(badidx, frames, faces + 100)
    with pytest.raises(DatasetError, match="face indices"):
        read_anime(badidx)
    with pytest.raises(DatasetError, match="cannot be read"):
        read_anime(tmp_path / "missing.anime")


# ---------------------------------------------------------------------------------------------
# MotionSample, resampling, vertex budget
# ---------------------------------------------------------------------------------------------


def test_motion_sample_validation():
    frames, faces = _clip()
    with pytest.raises(DatasetError, match="expected \\(T, N, 3\\)"):
        MotionSample(frames[0], faces, [], "x")
    bad = frames.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        MotionSample(bad, faces, [], "x")
    with pytest.raises(DatasetError, match="face indices"):
        MotionSample(frames, faces + 8, [], "x")
    s = MotionSample(frames.astype(np.float64), faces.astype(np.int32), "one caption", "x")
    assert s.frames.dtype == np.float32 and s.faces.dtype == np.int64 and s.captions == ["one caption"]


def test_resample_frames():
    rng = np.random.default_rng(1)
    start, velocity = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    # a motion linear in time is reproduced exactly at any frame count
    src = np.stack([start + velocity * t for t in np.linspace(0, 1, 120)])
    out = resample_frames(src, 16)
    want = np.stack([start + velocity * t for t in np.linspace(0, 1, 16)])
    assert out.shape == (16, 6, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=1e-5)
    np.testing.assert_array_equal(out[0], src[0].astype(np.float32))
    np.testing.assert_array_equal(out[-1], src[-1].astype(np.float32))
    # upsampling a 2-frame clip interpolates between its frames
    two = resample_frames(src[[0, -1]], 5)
    np.testing.assert_allclose(two[2], (src[0] + src[-1]) / 2, atol=1e-6)
    # a 1-frame clip is repeated; same length is a copy
    one = resample_frames(src[:1], 16)
    assert one.shape == (16, 6, 3) and np.all(one == one[0])
    same = resample_frames(out, 16)
    np.testing.assert_array_equal(same, out)
    assert same is not out
    with pytest.raises(DatasetError, match="positive frame count"):
        resample_frames(src, 0)


def _sphere_sample(n_seg=64, n_ring=32):
    v, f = uv_sphere(n_seg, n_ring)
    offsets = np.linspace(0, 1, 16)[:, None, None] * np.array([0.5, 0.0, 0.25])
    return MotionSample((v[None] + offsets).astype(np.float32), f, ["a ball moves"], "test:sphere",
                        family="jump", meta={"k": 1})


def test_vertex_budget_within_budget_is_untouched():
    s = _sphere_sample(8, 6)
    out, note = apply_vertex_budget(s, 1000)
    assert out is s and note is None


def test_vertex_budget_simplifies_and_says_so():
    s = _sphere_sample()
    n = s.num_vertices
    out, note = apply_vertex_budget(s, 500)
    assert 100 < out.num_vertices <= 500
    assert f"{n} vertices > budget 500" in note and "vertex clustering" in note
    assert out.meta["vertex_budget_note"] == note and out.meta["original_vertex_count"] == n
    assert out.meta["k"] == 1 and s.meta == {"k": 1}  # the input is not modified
    assert out.captions == s.captions and out.family == "jump" and len(out.faces) > 100
    assert out.faces.max() < out.num_vertices
    assert not np.any(out.faces[:, 0] == out.faces[:, 1])
    # a pure translation survives the averaging exactly (up to float32)
    np.testing.assert_allclose(out.frames[-1] - out.frames[0], np.broadcast_to([0.5, 0, 0.25],
                               out.frames[0].shape), atol=1e-5)
    # still roughly a unit sphere
    radius = np.linalg.norm(out.frames[0], axis=1)
    assert 0.85 < radius.mean() <= 1.0 + 1e-6
    # a random grid shift gives a different, equally valid simplification
    out2, _ = apply_vertex_budget(s, 500, np.random.default_rng(3))
    assert out2.num_vertices <= 500
    assert out2.frames.shape != out.frames.shape or not np.array_equal(out2.frames, out.frames)
    tiny, _ = apply_vertex_budget(s, 1)
    assert tiny.num_vertices == 1


# ---------------------------------------------------------------------------------------------
# Shards and folders
# ---------------------------------------------------------------------------------------------


def _varied_samples():
    a, fa = _clip(T=16, N=10, F=4, seed=1)
    b, fb = _clip(T=3, N=25, F=0, seed=2)
    c, fc = _clip(T=1, N=4, F=2, seed=3)
    return [
        MotionSample(a, fa, ["a cube spins", "the cube is spinning", "ünïcode ok"], "p:1",
                     family="spin", meta={"params": {"speed": "fast", "v": np.float32(2.5)},
                                          "parts": {"head": [[0, 3]]}}),
        MotionSample(b, fb, [], "dymesh:/x.bin", family=None, meta={}),
        MotionSample(c, fc, ["x"], "p:3", family="", meta={"array": np.arange(3)}),
    ]


def test_shard_round_trip(tmp_path):
    samples = _varied_samples()
    for compress in (False, True):
        path = write_shard(tmp_path / f"s{compress}.npz", samples, compress=compress)
        with np.load(path, allow_pickle=False) as z:  # no object arrays anywhere
            assert all(z[k].dtype != object for k in z.files)
        back = read_shard(path)
        assert len(back) == 3
        for s, r in zip(samples, back):
            np.testing.assert_array_equal(r.frames, s.frames)
            np.testing.assert_array_equal(r.faces, s.faces)
            assert r.captions == s.captions and r.source == s.source and r.family == s.family
        assert back[0].meta == {"params": {"speed": "fast", "v": 2.5}, "parts": {"head": [[0, 3]]}}
        assert back[2].meta == {"array": [0, 1, 2]}
    assert read_shard(write_shard(tmp_path / "empty.npz", [])) == []


def test_shard_errors(tmp_path):
    path = write_shard(tmp_path / "s.npz", _varied_samples())
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="cannot be read as a motion shard"):
        read_shard(cut)
    other = tmp_path / "other.npz"
    np.savez(other, vertices=np.zeros((3, 3)))
    with pytest.raises(DatasetError, match="not a motion shard"):
        read_shard(other)
    with pytest.raises(DatasetError, match="no such shard"):
        read_shard(tmp_path / "nope.npz")
    with pytest.raises(DatasetError, match="meta cannot be stored"):
        write_shard(tmp_path / "bad.npz", [MotionSample(*_clip(), [], "x", meta={"f": object()})])


def test_iter_dataset_reads_every_format(tmp_path):
    write_shard(tmp_path / "a" / "shard.npz", _varied_samples()[:2])
    frames, faces = _clip(T=4, N=6, F=3)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "clip.bin").write_bytes(pickle.dumps({"vertices": frames, "faces": faces,
                                                            "caption": "c"}))
    (tmp_path / "deer2MB_Run").mkdir()
    write_anime(tmp_path / "deer2MB_Run" / "deer2MB_Run.anime", frames, faces)
    got = list(iter_dataset(tmp_path))
    assert [s.source.split(":")[0] for s in got] == ["p", "dymesh", "dymesh", "dt4d"]
    assert got[-1].captions == ["a deer runs"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no dataset files"):
        list(iter_dataset(empty))
    with pytest.raises(DatasetError, match="not a folder"):
        list(iter_dataset(tmp_path / "missing"))
