"""The headless command: `python -m animateanymesh_addon.cli animate ...` with the bpy wheel's
Python, a real backend process and the tiny model of the parity fixtures.

Each run is a separate process, exactly as a studio script would call it; the files it writes
are checked here (GLB morph targets read from the file's JSON, PC2 frames, the contact sheet's
pixels) and, for the .blend, by opening it in Blender again.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_util import REPO, build_extension_zip, requires_bpy, run_in_blender

MODULE = "test_blender_cli"
pytestmark = [pytest.mark.blender, requires_bpy]
FAST = ["--steps", "3", "--num-traj", "32", "--seed", "3"]
BACKGROUND = (0.16, 0.16, 0.18)  # preview.BACKGROUND


def write_obj(path: Path) -> int:
    """A 4 x 3 grid of quads (one split into triangles) and a hexagon; returns the vertex count."""
    nx, ny = 4, 3
    verts = [(x * 0.5, y * 0.4, 0.05 * x * y) for y in range(ny) for x in range(nx)]
    faces = [(y * nx + x, y * nx + x + 1, (y + 1) * nx + x + 1, (y + 1) * nx + x)
             for y in range(ny - 1) for x in range(nx - 1)]
    a, b, c, d = faces.pop()
    faces += [(a, b, c), (a, c, d)]
    base = len(verts)
    verts += [(2.6 + 0.5 * np.cos(t), 0.4 + 0.5 * np.sin(t), 0.0)
              for t in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    faces.append(tuple(range(base, base + 6)))
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += ["f " + " ".join(str(i + 1) for i in f) for f in faces]
    path.write_text("o Sheet\n" + "\n".join(lines) + "\n")
    return len(verts)


def run_cli(args: list, tmp_path: Path, timeout: float = 240, *, cwd: Path = REPO,
            package: str = "animateanymesh_addon") -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "blender_user")  # nothing of the developer's
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if not (REPO / ".venv").is_dir() or cwd != REPO:  # Auto finds the checkout's .venv
        env["ANIMATEANYMESH_PYTHON"] = sys.executable
    return subprocess.run([sys.executable, "-m", f"{package}.cli", "animate", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def glb_json(path: Path) -> dict:
    """The JSON chunk of a binary glTF (header, then a JSON chunk first, by the spec)."""
    data = path.read_bytes()
    magic, version, _length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2
    chunk_length, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    return json.loads(data[20:20 + chunk_length])


def test_obj_to_glb_with_a_contact_sheet(tiny_model_dir, tmp_path):
    from PIL import Image

    obj = tmp_path / "sheet.obj"
    write_obj(obj)
    out, png = tmp_path / "sheet.glb", tmp_path / "sheet.png"
    proc = run_cli([obj, "--prompt", "a flag waves in the wind", "--out", out, "--model", tiny_model_dir,
                    *FAST, "--preview", png, "--preview-size", "64", "--preview-columns", "3",
                    "--preview-frames", "5"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {out}" in proc.stdout and f"wrote {png}" in proc.stdout
    assert "Animated Sheet: 16 frames on 1-16 (seed 3)" in proc.stdout

    gltf = glb_json(out)
    (mesh,) = gltf["meshes"]
    assert len(mesh["primitives"][0]["targets"]) == 16  # a morph target per frame
    channels = [c["target"]["path"] for a in gltf["animations"] for c in a["channels"]]
    assert channels == ["weights"]

    image = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64) / 255.0
    assert image.shape == (2 * 64, 3 * 64, 3)  # 5 tiles in 3 columns: 2 rows of 64 px
    background = np.array(BACKGROUND)
    for i in range(5):
        r, c = divmod(i, 3)
        tile = image[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64]
        covered = (np.abs(tile - background).max(-1) > 0.05).mean()
        assert 0.05 < covered < 0.95, (i, covered)  # the mesh is in the picture, framed
    assert np.abs(image[64:, 128:] - background).max() < 0.02  # the sixth slot stays empty


def test_obj_to_blend_with_a_point_cache(tiny_model_dir, tmp_path):
    from aam_seam.arrays import padded_polygons
    from animateanymesh_addon import writeback as wb
    from backend.pipeline import animate

    obj = tmp_path / "sheet.obj"
    n = write_obj(obj)
    out = tmp_path / "scene.blend"
    # no --python: the add-on's Auto finds this checkout's .venv, as a developer's would
    # two seconds at the scene's 24 fps with a model frame every 2 scene frames: 25 frames;
    # --quality draft without --steps (which would replace the preset's schedule)
    proc = run_cli([obj, "--prompt", "a flag waves", "--out", out, "--model", tiny_model_dir,
                    "--num-traj", "32", "--seed", "3", "--quality", "draft",
                    "--mode", "pointcache", "--frame-start", "5", "--frame-step", "2",
                    "--seconds", "2", "--set-range", "--strength", "1.5"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (cache,) = (tmp_path / "scene_pointcache").glob("*.pc2")
    frames, header = wb.read_pc2(cache)
    assert frames.shape == (25, n, 3)
    r = run_in_blender(MODULE, "scenario_open_result", blend=str(out))
    assert r["filepath"] == f"//scene_pointcache/{cache.name}"
    assert r["mode"] == "POINT_CACHE" and (r["frame_start"], r["frame_step"]) == (5.0, 2.0)
    assert r["scene_range"] == [5, 53]  # --set-range: 5 + 24 steps of 2
    np.testing.assert_allclose(r["at_7"], frames[1], rtol=0, atol=1e-5)  # frame 7 = sample 1
    # the motion is the backend's own for the draft preset (the frames start from the rest pose)
    matrix = np.asarray(r["matrix"])
    take = animate(wb.to_world_space(np.asarray(r["rest"], np.float32), matrix),
                   padded_polygons(np.asarray(r["flat"]), np.asarray(r["sizes"])), "a flag waves",
                   model=tiny_model_dir, seed=3, num_traj=32, quality="draft", frames=25,
                   strength=1.5, device="cpu").takes[0]
    expected = wb.to_object_space(take, matrix)
    np.testing.assert_allclose(frames - frames[:1], expected - expected[:1], rtol=0, atol=2e-5)


def scenario_open_result(blend: str) -> dict:
    import bpy

    from blender_util import evaluated_positions

    bpy.ops.wm.open_mainfile(filepath=blend)
    obj = bpy.data.objects["Sheet"]
    record = obj["animateanymesh"].to_dict()
    mesh = obj.data
    return {"rest": [v.co[:] for v in mesh.vertices], "matrix": [list(row) for row in obj.matrix_world],
            "flat": [v for p in mesh.polygons for v in p.vertices],
            "sizes": [p.loop_total for p in mesh.polygons],
            "filepath": obj.modifiers[0].filepath, "mode": record["mode"],
            "frame_start": record["frame_start"], "frame_step": record["frame_step"],
            "at_7": evaluated_positions(obj, 7).tolist(),
            "scene_range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end]}


def scenario_make_blend(path: str, obj_path: str) -> None:
    """A .blend with a collection of two meshes, one with its own prompt, and a camera."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.obj_import(filepath=obj_path)
    sheet = bpy.data.objects["Sheet"]
    props = bpy.data.collections.new("Props")
    bpy.context.scene.collection.children.link(props)
    twin = sheet.copy()
    twin.data = sheet.data.copy()
    twin.name = "Twin"
    twin.location.x += 4
    twin["aam_prompt"] = "a twin sways"
    for o in (sheet, twin):
        for c in o.users_collection:
            c.objects.unlink(o)
        props.objects.link(o)
    bpy.ops.wm.save_as_mainfile(filepath=path)


def test_blend_collection_to_fbx(tiny_model_dir, tmp_path):
    obj = tmp_path / "sheet.obj"
    write_obj(obj)
    blend = tmp_path / "props.blend"
    run_in_blender(MODULE, "scenario_make_blend", path=str(blend), obj_path=str(obj))
    out = tmp_path / "props.fbx"
    proc = run_cli([blend, "--collection", "Props", "--prompt", "a sheet flaps", "--out", out,
                    "--model", tiny_model_dir, "--python", sys.executable, *FAST], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Batch: 2 done, 0 failed" in proc.stdout
    assert "  Sheet: done" in proc.stdout and "  Twin: done" in proc.stdout
    assert out.is_file() and out.stat().st_size > 1000


def test_collection_on_a_ray_cluster_matches_the_local_batch(tiny_model_dir, tmp_path):
    """--ray: every object goes to a local Ray cluster of 2 workers at once; the shape keys
    written back are the ones the local queue writes for the same seeds."""
    obj = tmp_path / "sheet.obj"
    write_obj(obj)
    blend = tmp_path / "props.blend"
    run_in_blender(MODULE, "scenario_make_blend", path=str(blend), obj_path=str(obj))
    results = {}
    for name, extra in (("local", []), ("ray", ["--ray", "--ray-workers", "2"])):
        out = tmp_path / f"{name}.blend"
        proc = run_cli([blend, "--collection", "Props", "--prompt", "a sheet flaps", "--out", out,
                        "--model", tiny_model_dir, "--python", sys.executable, *FAST, *extra],
                       tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Batch: 2 done, 0 failed" in proc.stdout
        results[name] = run_in_blender(MODULE, "scenario_read_keys", path=str(out))
    (log,) = (tmp_path / "blender_user").rglob("batches/*/batch.log")
    assert "2 Ray worker(s)" in log.read_text()
    assert set(results["ray"]) == {"Sheet", "Twin"}
    for name, keys in results["local"].items():
        np.testing.assert_allclose(np.array(results["ray"][name]), np.array(keys), atol=1e-4)


def test_collection_on_an_unreachable_ray_cluster_says_why_in_one_line(tiny_model_dir, tmp_path):
    obj = tmp_path / "sheet.obj"
    write_obj(obj)
    blend = tmp_path / "props.blend"
    run_in_blender(MODULE, "scenario_make_blend", path=str(blend), obj_path=str(obj))
    proc = run_cli([blend, "--collection", "Props", "--prompt", "a sheet flaps", "--out",
                    tmp_path / "o.blend", "--model", tiny_model_dir, "--python", sys.executable,
                    *FAST, "--ray", "127.0.0.1:1"], tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in proc.stdout + proc.stderr
    assert not (tmp_path / "o.blend").exists()


def scenario_read_keys(path: str) -> dict:
    import bpy

    bpy.ops.wm.open_mainfile(filepath=path)
    out = {}
    for obj in bpy.data.collections["Props"].all_objects:
        keys = obj.data.shape_keys.key_blocks
        out[obj.name] = [[tuple(v.co) for v in key.data] for key in keys]
    return out


def scenario_install(zip_path: str) -> None:
    import bpy

    assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default") == {"FINISHED"}


def test_runs_from_the_installed_extension_folder(tiny_model_dir, tmp_path):
    """Studios run the installed copy: `python -m animateanymesh.cli` from the extension
    folder; it shares the extension's user folder (models, backend env, logs) with the UI."""
    zip_path = build_extension_zip(tmp_path / "dist")
    user = tmp_path / "blender_user"
    run_in_blender(MODULE, "scenario_install", zip_path=str(zip_path),
                   env={"BLENDER_USER_RESOURCES": str(user)})
    obj = tmp_path / "sheet.obj"
    write_obj(obj)
    out = tmp_path / "sheet.abc"
    proc = run_cli([obj, "--prompt", "a flag waves", "--out", out, "--model", tiny_model_dir, *FAST],
                   tmp_path, cwd=user / "extensions" / "user_default", package="animateanymesh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file() and "module changed on disk" not in proc.stdout + proc.stderr
    log = user / "extensions" / ".user" / "user_default" / "animateanymesh" / "logs" / "backend.log"
    assert "backend start" in log.read_text()


def test_user_errors_exit_2_with_the_fix(tiny_model_dir, tmp_path):
    obj = tmp_path / "sheet.obj"
    write_obj(obj)
    cases = [
        ([tmp_path / "missing.obj", "--prompt", "x", "--out", tmp_path / "o.glb"], "does not exist"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.txt"], "--out must end in"),
        ([obj, "--prompt", " ", "--out", tmp_path / "o.glb"], "--prompt is empty"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--model", tmp_path / "nope"],
         "not default, official, or an existing folder"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--frames", "1"], "--frames must be"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--seconds", "0"], "--seconds must be"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--strength", "3"], "--strength must be"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--repeat", "0"],
         "--repeat must be between 1 and 16 (got 0)"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--variations", "40"],
         "--variations must be between 1 and 16 (got 40)"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--then", " "],
         "--then: chained prompt 2 is empty"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--mask-falloff", "0.1"],
         "--mask-falloff softens a mask: give the vertex group with --mask GROUP"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--mask", "Top", "--mask-falloff", "2"],
         "--mask-falloff must be between 0 and 1"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--loop", "sideways"],
         "argument --loop: invalid choice: 'sideways'"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--keep-shape", "rigid"],
         "argument --keep-shape: invalid choice: 'rigid'"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--quality", "bogus"],
         "--quality: unknown quality 'bogus'; choose draft, standard, reference."),
        # judged after the file is open: Blender runs, no backend starts
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--objects", "Nope"],
         "no object named Nope in sheet.obj; meshes: Sheet"),
        ([obj, "--prompt", "x", "--out", tmp_path / "o.glb", "--mask", "Nope"],
         "'Sheet' has no vertex group 'Nope' for the mask (its groups: none)"),
    ]
    for args, expected in cases:
        proc = run_cli(args, tmp_path, timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 or "usage:" in proc.stderr, proc.stderr
    assert not (tmp_path / "o.glb").exists()


def scenario_make_masked_blend(path: str, obj_path: str) -> None:
    """The sheet with a vertex group "Top": its hexagon (the last 6 vertices) moves, the grid not."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.obj_import(filepath=obj_path)
    sheet = bpy.data.objects["Sheet"]
    n = len(sheet.data.vertices)
    sheet.vertex_groups.new(name="Top").add(list(range(n - 6, n)), 1.0, "REPLACE")
    bpy.ops.wm.save_as_mainfile(filepath=path)


def scenario_open_variations(blend: str) -> dict:
    import bpy

    bpy.ops.wm.open_mainfile(filepath=blend)
    coll = bpy.data.collections.get("Variations")
    out = {"range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end],
           "original_animated": bpy.data.objects["Sheet"].get("animateanymesh") is not None,
           "collection": coll is not None and coll.name in bpy.context.scene.collection.children,
           "copies": {}}
    for obj in (coll.objects if coll else ()):
        record = obj["animateanymesh"].to_dict()
        key = obj.data.shape_keys
        frames = [[tuple(p.co) for p in key.key_blocks[name].data] for name in record["shape_keys"]]
        out["copies"][obj.name] = {"of": obj["aam_variation_of"], "take": obj["aam_take"],
                                   "seed": obj["aam_seed"], "frames": frames,
                                   "period": record.get("period"), "loop": record.get("loop")}
    return out


def test_chain_loop_mask_and_variations_from_the_command_line(tiny_model_dir, tmp_path):
    obj = tmp_path / "sheet.obj"
    n = write_obj(obj)
    blend = tmp_path / "masked.blend"
    run_in_blender(MODULE, "scenario_make_masked_blend", path=str(blend), obj_path=str(obj))
    out = tmp_path / "takes.blend"
    proc = run_cli([blend, "--prompt", "a flag waves", "--then", "a flag falls", "--loop",
                    "--mask", "Top", "--mask-falloff", "0", "--variations", "2", "--set-range",
                    "--out", out, "--model", tiny_model_dir, *FAST], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Made 2 variations of Sheet in 'Variations' (seeds 3, 4)" in proc.stdout
    assert "  take 1: seed 3 on Sheet take 1" in proc.stdout
    assert "  take 2: seed 4 on Sheet take 2" in proc.stdout
    r = run_in_blender(MODULE, "scenario_open_variations", blend=str(out))
    assert r["collection"] and not r["original_animated"]
    takes = sorted(r["copies"].values(), key=lambda c: c["take"])
    # a bare --loop is the default method; the chain's 16 + 15 frames loop with the method's period
    from aam_seam.limits import DEFAULT_LOOP

    assert [(c["of"], c["take"], c["seed"], c["loop"]) for c in takes] == [
        ("Sheet", 1, 3, DEFAULT_LOOP), ("Sheet", 2, 4, DEFAULT_LOOP)]
    period = max(c["period"] for c in takes)
    assert period >= 2 * 16 - 2 and f"a {takes[0]['period']}-frame loop on 1-{takes[0]['period']}" in proc.stdout
    assert r["range"] == [1, period]  # one period: the timeline wraps onto frame 0
    for copy in takes:
        frames = np.asarray(copy["frames"])
        assert frames.shape == (copy["period"] + 1, n, 3)  # written closed: the last is the first
        np.testing.assert_array_equal(frames[-1], frames[0])
        moved = np.abs(frames - frames[:1]).max(axis=(0, 2))
        assert moved[:n - 6].max() < 1e-6 and moved[n - 6:].min() > 1e-4  # only "Top" moves
    assert np.abs(np.asarray(takes[0]["frames"]) - np.asarray(takes[1]["frames"])).max() > 1e-4
    # animating "every mesh" of that file again animates the original, not the waiting takes
    again = tmp_path / "again.blend"
    proc = run_cli([out, "--prompt", "a flag waves", "--out", again, "--model", tiny_model_dir, *FAST],
                   tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r2 = run_in_blender(MODULE, "scenario_open_variations", blend=str(again))
    assert r2["original_animated"]
    assert {name: c["frames"] for name, c in r2["copies"].items()} == {
        name: c["frames"] for name, c in r["copies"].items()}
