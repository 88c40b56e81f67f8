"""Chains, loops, masks and variations through the pipeline and the command line (tiny model)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from backend import joins, loops
from backend.errors import UserError
from backend.mesh_io import save_obj
from backend.model_folder import load_model
from backend.pipeline import animate

FAST = dict(steps=3, num_traj=32)


def stands_out(clip, frames) -> bool:
    """Does the velocity change at any of `frames` exceed every change elsewhere in the clip?"""
    change = joins.acceleration(clip)          # change[i] is at frame i + 1
    at = [f - 1 for f in frames]
    others = np.delete(change, at)
    return bool(change[at].max() > others.max())


def grid(n=7):
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    verts = np.stack([xs, ys, np.cos(xs) * 0.4], -1).reshape(-1, 3).astype(np.float64) * 3 + [5, 0, 1]
    quads = [[i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j]
             for i in range(n - 1) for j in range(n - 1)]
    return verts, quads


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def test_variations_in_one_batch_equal_the_same_seeds_run_one_by_one(model):
    verts, faces = grid()
    batched = animate(verts, faces, "a flag waves", model=model, seed=11, variations=3, **FAST)
    assert batched.takes.shape == (3, 16, len(verts), 3) and batched.seeds == [11, 12, 13]
    for take, seed in enumerate(batched.seeds):
        single = animate(verts, faces, "a flag waves", model=model, seed=seed, **FAST)
        np.testing.assert_allclose(batched.takes[take], single.frames, rtol=0, atol=1e-5)
    assert np.abs(batched.takes[0] - batched.takes[1]).max() > 1e-3     # different takes


def test_a_chain_starts_each_segment_where_the_last_ended(model):
    verts, faces = grid()
    first = animate(verts, faces, "a flag waves", model=model, seed=4, **FAST).frames
    chain = animate(verts, faces, "a flag waves", model=model, seed=4, then=["it bends", "it waves"],
                    **FAST)
    assert chain.frames.shape == (46, len(verts), 3) and chain.seams == [15, 30]
    np.testing.assert_allclose(chain.frames[:16], first, atol=1e-5)   # segment 1 is the plain take
    assert not stands_out(chain.frames, chain.seams)
    assert max(joins.seam_jump_ratio(chain.frames, [seam]) for seam in chain.seams) < 1e-3
    longer = animate(verts, faces, "a flag waves", model=model, seed=4, then=["it bends"], frames=100,
                     **FAST)
    assert longer.frames.shape[0] == 100


@pytest.mark.parametrize("method", ["blend", "crossfade", "match", "pingpong", "auto"])
def test_a_loop_wraps_without_a_jump(model, method):
    verts, faces = grid()
    loop = animate(verts, faces, "a flag waves", model=model, seed=2, loop=method, **FAST).frames
    assert loop.shape[0] >= 15
    unrolled = np.concatenate([loop, loop[:2]])
    assert not stands_out(unrolled, [len(loop)])   # the wrap is smooth like the rest
    retimed = animate(verts, faces, "a flag waves", model=model, seed=2, loop=method, frames=48, **FAST)
    assert retimed.frames.shape[0] == 48
    if not loops.LOOPS[method].extra_segments:  # made from the plain take by the method itself
        plain = animate(verts, faces, "a flag waves", model=model, seed=2, **FAST).frames
        np.testing.assert_allclose(loop, loops.LOOPS[method].close(plain, 16), atol=1e-5)


def test_masked_vertices_stay_pinned_and_the_rest_moves(model):
    verts, faces = grid()
    weights = (verts[:, 0] > verts[:, 0].mean()).astype(np.float32)   # the right half moves
    plain = animate(verts, faces, "a flag waves", model=model, seed=3, **FAST).frames
    for falloff in (None, 0.2):
        masked = animate(verts, faces, "a flag waves", model=model, seed=3, mask=weights,
                         mask_falloff=falloff, strength=1.5, **FAST).frames
        diagonal = np.linalg.norm(np.ptp(verts, axis=0))
        pinned = np.linalg.norm(masked[:, weights == 0] - verts[weights == 0], axis=-1).max()
        assert pinned < 1e-6 * diagonal
        assert np.linalg.norm(masked[:, weights == 1] - masked[:1, weights == 1], axis=-1).max() > 0
    np.testing.assert_allclose(masked[:, -1] - verts[-1], 1.5 * (plain[:, -1] - verts[-1]), atol=1e-4)
    with pytest.raises(UserError, match="one weight per vertex") as err:
        animate(verts, faces, "a flag waves", model=model, mask=weights[:-1], **FAST)
    assert err.value.code == "bad_mask"
    with pytest.raises(UserError, match="between 0"):
        animate(verts, faces, "a flag waves", model=model, mask=weights * 3, **FAST)


@pytest.mark.parametrize("options, words", [
    (dict(then=["a flag waves"] * 16), "at most 16"),
    (dict(then=[" "]), "chained prompt 2 is empty"),
    (dict(loop="spiral"), "unknown loop method"),
    (dict(variations=0), "variations must be between"),
    (dict(mask_falloff=-0.1), "mask falloff"),
    (dict(keep_shape="rigid"), "unknown keep shape mode 'rigid'; choose off, auto, on"),
])
def test_bad_values_are_one_clear_sentence_before_any_work(options, words, tmp_path):
    verts, faces = grid()
    with pytest.raises(UserError, match=words):
        animate(verts, faces, "a flag waves", model=tmp_path / "no-model-needed", **options)


def test_keep_shape_pulls_every_frame_towards_the_rest_edge_lengths(model):
    from backend.evaluate import edge_distortion
    from backend.mesh import prepare_mesh

    verts, faces = grid()
    edges = prepare_mesh(verts, faces).edges
    stages = []
    takes = {mode: animate(verts, faces, "a flag waves", model=model, seed=3, keep_shape=mode,
                           progress=lambda stage, done, total: stages.append((mode, stage)), **FAST).frames
             for mode in ("off", "on", "auto")}
    assert edge_distortion(takes["on"], edges) < 0.5 * edge_distortion(takes["off"], edges)
    assert edge_distortion(takes["off"], edges) > 0.003
    np.testing.assert_array_equal(takes["on"][0], takes["off"][0])           # frame 0 is the rest pose
    assert ("on", "shape") in stages and ("off", "shape") not in stages
    # auto projects or keeps the take as made; without a mode the model's config decides
    assert any(np.array_equal(takes["auto"], takes[m]) for m in ("off", "on"))
    assert model.config.sampler.keep_shape == "off"                        # a config's default
    default = animate(verts, faces, "a flag waves", model=model, seed=3, **FAST)
    np.testing.assert_array_equal(default.frames, takes["off"])
    assert default.keep_shape == "off"
    model.config.sampler.keep_shape = "on"
    try:
        np.testing.assert_array_equal(animate(verts, faces, "a flag waves", model=model, seed=3, **FAST).frames,
                                      takes["on"])
    finally:
        model.config.sampler.keep_shape = "off"


def test_the_command_line_writes_one_file_per_take_and_a_sheet(tmp_path, tiny_model_dir):
    verts, faces = grid()
    mesh = tmp_path / "grid.obj"
    save_obj(mesh, verts, faces)
    np.save(tmp_path / "w.npy", (verts[:, 0] > 8).astype(np.float32))
    out = tmp_path / "take.npz"
    run = subprocess.run([sys.executable, "-m", "backend", "animate", str(mesh), "--prompt", "a flag waves",
                          "--then", "it bends", "--repeat", "2", "--loop", "--mask", str(tmp_path / "w.npy"),
                          "--variations", "2", "--seed", "5", "--model", str(tiny_model_dir),
                          "--steps", "3", "--num-traj", "32", "--out", str(out), "--keep-shape", "on",
                          "--preview", str(tmp_path / "sheet.png")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    files = [tmp_path / "take_1.npz", tmp_path / "take_2.npz"]
    seeds = [int(np.load(f)["seed"]) for f in files]
    assert seeds == [5, 6] and not out.exists()
    data = np.load(files[0])
    assert list(data["then"]) == ["it bends", "a flag waves", "it bends"] and str(data["loop"]) == "auto"
    assert str(data["keep_shape"]) == "on"
    same = animate(verts, faces, "a flag waves", model=tiny_model_dir, seed=5, then=list(data["then"]),
                   loop="auto", mask=np.load(tmp_path / "w.npy"), keep_shape="on", steps=3, num_traj=32)
    np.testing.assert_allclose(data["frames"], same.frames, atol=5e-4)   # 20 units across
    from PIL import Image

    assert Image.open(tmp_path / "sheet.png").size[1] == 2 * 192        # one row per take
    bad = subprocess.run([sys.executable, "-m", "backend", "animate", str(mesh), "--prompt", "a flag waves",
                          "--mask", str(tmp_path / "missing.npy"), "--model", str(tiny_model_dir),
                          "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "mask file not found" in bad.stderr and "Traceback" not in bad.stderr
