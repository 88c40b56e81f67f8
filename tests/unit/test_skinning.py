"""The skinning math (animateanymesh_addon/skinning.py) without Blender: numpy and Dem Bones."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from blender_util import REPO

pytest.importorskip("py_dem_bones")


def _load_skinning():
    # the add-on package imports bpy; skinning.py is loaded on its own, as its worker does
    spec = importlib.util.spec_from_file_location("aam_skinning", REPO / "animateanymesh_addon" / "skinning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sk = _load_skinning()


def grid_tube(rings: int = 10, sides: int = 8):
    verts = np.array([(0.3 * np.cos(a), 0.3 * np.sin(a), 0.2 * r)
                      for r in range(rings) for a in np.linspace(0, 2 * np.pi, sides, endpoint=False)])
    faces = [[r * sides + s, r * sides + (s + 1) % sides, (r + 1) * sides + (s + 1) % sides,
              (r + 1) * sides + s] for r in range(rings - 1) for s in range(sides)]
    return verts, faces


def rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def test_decompose_and_compose_are_inverse_and_keep_quaternions_continuous():
    rng = np.random.default_rng(0)
    t = 30
    angles = np.linspace(0, 3 * np.pi, t)       # past pi: the naive quaternion flips sign
    mats = np.tile(np.eye(4), (t, 2, 1, 1))
    for f, a in enumerate(angles):
        mats[f, 0, :3, :3] = rotation("z", a) @ np.diag([1.0, 2.0, 0.5])
        mats[f, 1, :3, :3] = rotation("x", -a)
        mats[f, :, :3, 3] = rng.normal(size=(2, 3))
    loc, quat, scale = sk.decompose(mats)
    assert np.abs(sk.compose(loc, quat, scale) - mats).max() < 1e-12
    assert np.allclose(scale[:, 0], [1.0, 2.0, 0.5]) and np.allclose(scale[:, 1], 1.0)
    steps = (quat[1:] * quat[:-1]).sum(axis=-1)
    assert (steps > 0).all()                     # neighbours on the same side: no flip


def test_pose_basis_is_what_blenders_parent_composition_inverts():
    rest, faces = grid_tube()
    frames = np.array([rest @ rotation("x", 0.3 * f).T * [1.0 + 0.1 * f, 1.0, 1.0] for f in range(5)])
    skin = sk.Skin(rest=rest, bone_index=np.zeros((len(rest), 1), np.int32),
                   bone_weight=np.ones((len(rest), 1), np.float32),
                   root=sk.fit_root(rest, frames),
                   bones=np.tile(np.eye(4), (5, 1, 1, 1)))
    skin.bones[:, 0, :3, :3] = [rotation("y", 0.2 * f) for f in range(5)]
    root_rest, _ = sk.root_rest_matrix(rest)
    bone_rest, _ = sk.bone_rest_matrices(rest, skin.bone_index, skin.bone_weight, 1)
    root_basis, bone_basis = sk.pose_basis(root_rest, bone_rest, skin)
    deform = sk.pose_deformation(root_rest, bone_rest, root_basis, bone_basis)
    assert np.abs(deform - skin.root[:, None] @ skin.bones).max() < 1e-12
    # the root's channels are a pure scale and translation, the bones' pure rotations
    _, quat, _ = sk.decompose(root_basis)
    assert np.abs(np.abs(quat[:, 0]) - 1).max() < 1e-12
    _, _, scale = sk.decompose(bone_basis)
    assert np.abs(scale - 1).max() < 1e-12


def test_fit_root_recovers_a_per_axis_scale_and_translation():
    rest, _ = grid_tube()
    frames = np.array([rest * [1.2, 0.9, 0.7] + [0.5, -1.0, 2.0], rest])
    root = sk.fit_root(rest, frames)
    assert np.abs(sk.apply(root, rest[None])[0] - frames[0]).max() < 1e-12
    assert np.abs(root[1] - np.eye(4)).max() < 1e-12


def test_weld_joins_seams_but_not_parts_that_only_touch_at_rest():
    rest = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [2, 0, 0]])
    seam = np.array([rest, rest + 0.1])                   # vertices 1 and 3 move together
    first, inverse = sk.weld(rest, seam)
    assert inverse[1] == inverse[3] and len(first) == 4
    apart = seam.copy()
    apart[1, 3] += [0, 0, 1]                               # ... or apart
    _, inverse = sk.weld(rest, apart)
    assert inverse[1] != inverse[3]


def test_top_influences_keep_the_largest_four_summing_to_one():
    w = np.array([[0.1, 0.2, 0.3, 0.05, 0.35], [0, 0, 0, 0, 0]], dtype=np.float64)
    index, weight = sk.top_influences(w, 4)
    assert index[0].tolist() == [4, 2, 1, 0]
    assert np.allclose(weight.sum(axis=1), 1.0)
    assert weight[1, 0] == 1.0                             # no weight at all: one bone holds it


def test_solve_reproduces_an_articulated_and_a_scaling_clip():
    rest, faces = grid_tube()
    h = rest[:, 2] / rest[:, 2].max()
    bend = np.array([np.where(h[:, None] > 0.5, (rest - [0, 0, 0.9]) @ rotation("x", 0.5 * np.sin(f)).T
                              + [0, 0, 0.9], rest) for f in range(8)])
    grow = np.array([rest * (1.0 + 0.3 * np.sin(f)) for f in range(8)])
    calls = []
    for frames in (bend, grow):
        skin = sk.solve(rest, frames, faces, 4, iterations=6,
                        progress=lambda done, total, rmse: calls.append((done, total)))
        err = sk.error_stats(skin.deform(), frames, rest)
        assert err["share_of_motion"] < 0.05 and err["mean"] < 0.005, err
        assert skin.bone_index.shape[1] <= sk.MAX_INFLUENCES
        assert np.allclose(skin.bone_weight.sum(axis=1), 1.0, atol=1e-6)
    assert calls[-1][0] == calls[-1][1]                   # progress reaches its total


def test_solve_stops_when_cancelled():
    rest, faces = grid_tube()
    frames = np.array([rest, rest + 0.1, rest + 0.2])
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 2

    assert sk.solve(rest, frames, faces, 2, iterations=10, cancelled=cancelled) is None


@pytest.mark.parametrize("case, fragment", [
    ("one_frame", "at least 2"), ("topology", "topology changes"), ("nan", "non-finite"),
    ("bones_zero", "out of range"), ("bones_many", "at most one bone per vertex"),
    ("no_faces", "no faces"),
])
def test_solve_refuses_bad_input_with_the_fix(case, fragment):
    rest, faces = grid_tube(3, 4)
    frames = np.array([rest, rest + 0.1])
    bones = 2
    if case == "one_frame":
        frames = frames[:1]
    elif case == "topology":
        frames = frames[:, :-1]
    elif case == "nan":
        frames[1, 0, 0] = np.nan
    elif case == "bones_zero":
        bones = 0
    elif case == "bones_many":
        bones = len(rest) + 1
    elif case == "no_faces":
        faces = []
    with pytest.raises(sk.SkinningError, match=fragment):
        sk.solve(rest, frames, faces, bones)


def test_cluster_start_finds_rigid_parts_and_their_motion():
    rest, _ = grid_tube(12, 8)
    part = np.digitize(rest[:, 2], [0.75, 1.55])          # three stacked rings of rings
    frames = []
    for f in range(6):
        pose = rest.copy()
        for p, axis in ((1, "x"), (2, "y")):
            pose[part == p] = rest[part == p] @ rotation(axis, 0.3 * f * p).T + [0.05 * f, 0, 0]
        frames.append(pose)
    frames = np.array(frames)
    labels, transforms = sk.cluster_start(rest, frames, 3)
    assert len(set(zip(part.tolist(), labels.tolist()))) == 3     # one label per part
    moved = np.stack([sk.apply(transforms[:, labels[i]], rest[i][None])[:, 0]
                      for i in range(len(rest))], axis=1)
    assert np.abs(moved - frames).max() < 1e-9


def test_an_articulated_body_keeps_the_bones_it_needs():
    # Dem Bones' own start kept 5 bones on this quadruped whatever was asked, so its lower legs
    # bent with their thighs (6% of the motion); the clustered start keeps them apart
    from backend.data import procedural

    clip = procedural.sample_at(0, 0, "eval", ["rear_up"], max_vertices=2000, T=16)
    frames = clip.frames.astype(np.float64)
    skin = sk.solve(frames[0], frames, clip.faces.tolist(), 16)
    err = sk.error_stats(skin.deform(), frames, frames[0])
    assert skin.num_bones > 5 and err["share_of_motion"] < 0.01, (skin.num_bones, err)
