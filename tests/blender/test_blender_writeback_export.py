"""Write-back and bake/export in real Blender (the bpy wheel).

Each test runs one scenario in a fresh Blender process (see blender_util): a mesh with quads,
a triangle and a hexagon n-gon ("A"), and a second one ("B") with a transform, an existing shape
key driven by the artist's own action, and a Subdivision modifier. Trajectories are per-vertex
sinusoids in each object's own vertex order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_util import (REPO, build_extension_zip, evaluated_positions, point_set_distance,
                          requires_bpy, run_in_blender)

MODULE = "test_blender_writeback_export"
pytestmark = [pytest.mark.blender, requires_bpy]

ATOL = 1e-5


# ------------------------------------------------------------------------------ scene (in Blender)

def _mesh_object(name: str):
    import bpy

    nx, ny = 4, 3
    verts = [(x * 0.5, y * 0.4, 0.05 * x * y) for y in range(ny) for x in range(nx)]
    quads = [(y * nx + x, y * nx + x + 1, (y + 1) * nx + x + 1, (y + 1) * nx + x)
             for y in range(ny - 1) for x in range(nx - 1)]
    faces = quads[:-1]
    last = quads[-1]
    faces.append((last[0], last[1], last[2]))  # a triangle
    base = len(verts)
    verts += [(2.5 + np.cos(a), 0.4 + np.sin(a), 0.2 * np.sin(2 * a))
              for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    faces.append(tuple(range(base, base + 6)))  # a hexagon n-gon
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _artist_fcurves(key):
    """The F-curve collection of the Key's assigned action, on 4.2 (legacy) and 4.4+ (slotted)."""
    import bpy

    anim = key.animation_data
    if bpy.app.version < (4, 4, 0):
        return anim.action.fcurves
    from bpy_extras import anim_utils

    return anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot).fcurves


def build_scene():
    """A (quads, triangle, n-gon) and B (transform, artist shape key + action, Subdivision)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    a = _mesh_object("A")
    b = _mesh_object("B")
    b.location = (1.0, -2.0, 0.5)
    b.rotation_euler = (0.3, -0.2, 0.7)
    b.scale = (1.5, 0.8, 1.2)
    b.shape_key_add(name="Basis", from_mix=False)
    smile = b.shape_key_add(name="Smile", from_mix=False)
    co = np.empty(len(b.data.vertices) * 3, np.float32)
    smile.points.foreach_get("co", co)
    co[2::3] += 0.3
    co[0::3] *= 1.1
    smile.points.foreach_set("co", co)
    # the artist animates Smile 0 -> 0.5 over frames 1..41 with their own action
    smile.value = 0.0
    smile.keyframe_insert("value", frame=1)
    smile.value = 0.5
    smile.keyframe_insert("value", frame=41)
    mod = b.modifiers.new("Subd", "SUBSURF")
    mod.levels = mod.render_levels = 1
    bpy.context.view_layer.update()  # matrix_world is computed by the depsgraph
    return a, b


def trajectory(obj, num_frames: int, phase: float = 0.0):
    """Per-vertex sinusoid around the rest shape; frame 0 is deliberately not the rest."""
    from animateanymesh_addon import blender_writeback as bw

    rest = bw.rest_coordinates(obj).astype(np.float64)
    t = np.arange(num_frames, dtype=np.float64)[:, None, None]
    k = np.arange(len(rest), dtype=np.float64)[None, :, None]
    wave = 0.15 * np.sin(0.7 * t + 0.9 * k + np.array([0.0, 1.3, 2.1]) + phase)
    return (rest[None] + wave + 0.02 * t).astype(np.float32)


def smile_contribution(b, time: float):
    """What the artist's animated Smile key adds to B at `time` (object space)."""
    key = b.data.shape_keys
    smile, basis = key.key_blocks["Smile"], key.reference_key
    n = len(b.data.vertices)
    s, r = np.empty(n * 3, np.float32), np.empty(n * 3, np.float32)
    smile.points.foreach_get("co", s)
    basis.points.foreach_get("co", r)
    fc = next(fc for fc in _artist_fcurves(key) if fc.data_path == 'key_blocks["Smile"].value')
    return fc.evaluate(time) * (s - r).reshape(n, 3).astype(np.float64)


def snapshot(obj) -> dict:
    """The artist's state of an object that write-back must keep (taken at frame 1, since
    the artist's Smile value is animated)."""
    import bpy

    bpy.context.scene.frame_set(1)
    state = {
        "matrix_world": np.array(obj.matrix_world).tolist(),
        "modifiers": [(m.name, m.type, m.show_viewport, m.show_render) for m in obj.modifiers
                      if m.type != "MESH_CACHE"],
        "vertices": np.array([v.co[:] for v in obj.data.vertices]).tolist(),
    }
    key = obj.data.shape_keys
    if key is not None:
        state["keys"] = {kb.name: np.array([p.co[:] for p in kb.points]).tolist()
                         for kb in key.key_blocks if not kb.name.startswith("AAM_")}
        state["key_values"] = {kb.name: kb.value for kb in key.key_blocks
                               if not kb.name.startswith("AAM_")}
        anim = key.animation_data
        if anim is not None and anim.action is not None:
            state["action"] = anim.action.name
            state["artist_fcurves"] = {
                fc.data_path: [tuple(kp.co) for kp in fc.keyframe_points]
                for fc in _artist_fcurves(key) if not fc.data_path.startswith('key_blocks["AAM_')}
    return state


def _with_modifiers_off(obj, names):
    saved = {n: obj.modifiers[n].show_viewport for n in names}
    for n in names:
        obj.modifiers[n].show_viewport = False
    return saved


def _max_error(obj, frames_expected):
    return max(float(np.abs(evaluated_positions(obj, t) - exp).max()) for t, exp in frames_expected)


# ------------------------------------------------------------------------------ scenarios

def scenario_shape_keys() -> dict:
    import bpy

    from animateanymesh_addon import blender_writeback as bw
    from animateanymesh_addon import targets
    from animateanymesh_addon.targets import shape_keys
    from animateanymesh_addon import writeback as wb

    a, b = build_scene()
    before_b = snapshot(b)
    ta, tb = 16, 12
    fa, fb = trajectory(a, ta), trajectory(b, tb, phase=0.4)
    info_a = shape_keys.write_shape_keys(a, fa, frame_start=1, frame_step=1)
    info_b = shape_keys.write_shape_keys(b, fb, frame_start=5, frame_step=2)
    assert (info_a.frame_start, info_a.frame_end) == (1, 16)
    assert (info_b.frame_start, info_b.frame_end) == (5, 27)

    tl_a, tl_b = wb.Timeline(1, 1), wb.Timeline(5, 2)
    # integer frames: exactly the trajectory; half frames and in-betweens: the blend of the
    # neighbouring frames; before / after: the first / last pose held.
    times_a = list(range(1, ta + 1)) + [1.5, 7.25, 15.5, -3, 30]
    err_a = _max_error(a, [(t, wb.positions_at(fa, t, tl_a)) for t in times_a])
    _with_modifiers_off(b, ["Subd"])
    times_b = list(tl_b.times(tb)) + [6, 8.5, 26, 1, 40]
    err_b = _max_error(b, [(t, wb.positions_at(fb, t, tl_b) + smile_contribution(b, t))
                           for t in times_b])
    b.modifiers["Subd"].show_viewport = True
    assert err_a < ATOL and err_b < ATOL, (err_a, err_b)
    # the in-betweens really blend (the check above would also pass if nothing moved at all)
    mid = wb.positions_at(fa, 7.5, tl_a)
    assert np.abs(mid - fa[6]).max() > 1e-3 and np.abs(mid - fa[7]).max() > 1e-3

    # keys and keyframes: Basis created once on A, kept on B; one linear F-curve per frame
    key_a, key_b = a.data.shape_keys, b.data.shape_keys
    keys_a = len(key_a.key_blocks)
    assert [kb.name for kb in key_a.key_blocks] == ["Basis"] + wb.shape_key_names("AAM", ta)
    assert [kb.name for kb in key_b.key_blocks][:2] == ["Basis", "Smile"]
    ours = [fc for fc in _artist_fcurves(key_b) if fc.data_path.startswith('key_blocks["AAM_')]
    assert len(ours) == tb
    assert all(kp.interpolation == "LINEAR" for fc in ours for kp in fc.keyframe_points)
    assert key_b.animation_data.action.name == before_b["action"]  # artist's action reused

    after_b = snapshot(b)
    for field in ("matrix_world", "modifiers", "vertices", "keys", "key_values", "action",
                  "artist_fcurves"):
        assert after_b[field] == before_b[field], field

    # re-animating replaces (fewer frames, other timing) instead of stacking
    fb2 = trajectory(b, 8, phase=1.1)
    shape_keys.write_shape_keys(b, fb2, frame_start=2, frame_step=1)
    names_b = [kb.name for kb in b.data.shape_keys.key_blocks]
    assert names_b == ["Basis", "Smile"] + wb.shape_key_names("AAM", 8), names_b
    ours = [fc for fc in _artist_fcurves(b.data.shape_keys)
            if fc.data_path.startswith('key_blocks["AAM_')]
    assert len(ours) == 8
    _with_modifiers_off(b, ["Subd"])
    err_b2 = _max_error(b, [(t, wb.positions_at(fb2, t, wb.Timeline(2, 1)) + smile_contribution(b, t))
                            for t in (2, 5, 5.5, 9)])
    b.modifiers["Subd"].show_viewport = True
    assert err_b2 < ATOL, err_b2

    # constant interpolation steps; anchor_rest starts exactly at the rest shape
    rest_a = bw.rest_coordinates(a)
    shape_keys.write_shape_keys(a, fa, interpolation="CONSTANT", anchor_rest=True)
    anchored = wb.anchor_to_rest(fa, rest_a)
    err_const = _max_error(a, [(1, rest_a), (4.5, anchored[3]), (4.99, anchored[3]), (5, anchored[4])])
    assert err_const < ATOL, err_const

    # removal leaves the artist's data exactly as it was, and our action / Basis gone
    assert targets.remove_animation(a) and targets.remove_animation(b)
    assert a.data.shape_keys is None and bw.animation_info(a) is None
    assert "AAM_A" not in bpy.data.actions
    final_b = snapshot(b)
    for field in ("modifiers", "vertices", "keys", "key_values", "action", "artist_fcurves"):
        assert final_b[field] == before_b[field], field
    assert [kb.name for kb in b.data.shape_keys.key_blocks] == ["Basis", "Smile"]
    assert not targets.remove_animation(b)  # nothing left to remove
    return {"err_a": err_a, "err_b": err_b, "err_b2": err_b2, "keys_a": keys_a}


def scenario_point_cache(cache_dir: str) -> dict:
    from animateanymesh_addon import blender_writeback as bw
    from animateanymesh_addon import targets
    from animateanymesh_addon.targets import point_cache, shape_keys
    from animateanymesh_addon import writeback as wb

    a, b = build_scene()
    before_b = snapshot(b)
    fa, fb = trajectory(a, 16), trajectory(b, 10, phase=0.4)
    info_a = point_cache.write_point_cache(a, fa, cache_dir, frame_start=1, frame_step=1)
    info_b = point_cache.write_point_cache(b, fb, cache_dir, frame_start=5, frame_step=2)
    assert any("shape keys" in w for w in info_b.warnings), info_b.warnings
    assert [m.type for m in b.modifiers] == ["MESH_CACHE", "SUBSURF"]  # cache first
    assert [m.type for m in a.modifiers] == ["MESH_CACHE"]
    np.testing.assert_array_equal(wb.read_pc2(info_b.cache_path)[0], fb)

    tl_a, tl_b = wb.Timeline(1, 1), wb.Timeline(5, 2)
    err_a = _max_error(a, [(t, wb.positions_at(fa, t, tl_a)) for t in [1, 2, 9, 16, 3.5, -2, 20]])
    _with_modifiers_off(b, ["Subd"])
    # the cache overwrites the positions, so the artist's Smile does not add here
    err_b = _max_error(b, [(t, wb.positions_at(fb, t, tl_b))
                           for t in list(tl_b.times(10)) + [6, 10, 0, 30]])
    b.modifiers["Subd"].show_viewport = True
    assert err_a < ATOL and err_b < ATOL, (err_a, err_b)
    after_b = snapshot(b)
    for field in ("matrix_world", "modifiers", "vertices", "keys", "key_values", "action",
                  "artist_fcurves"):
        assert after_b[field] == before_b[field], field

    # re-animating replaces the modifier (new file: undo may still want the old one)
    info_b2 = point_cache.write_point_cache(b, trajectory(b, 6), cache_dir, frame_start=1)
    assert [m.type for m in b.modifiers] == ["MESH_CACHE", "SUBSURF"]
    assert b.modifiers[0].filepath == info_b2.cache_path != info_b.cache_path
    # switching A to shape keys drops its cache modifier
    shape_keys.write_shape_keys(a, fa)
    assert [m.type for m in a.modifiers] == [] and bw.animation_info(a)["mode"] == "SHAPE_KEYS"
    # files are never deleted by a later write: undo may bring back a modifier that reads them
    assert all(Path(i.cache_path).is_file() for i in (info_a, info_b, info_b2))

    assert targets.remove_animation(b)
    assert [m.name for m in b.modifiers] == ["Subd"] and bw.animation_info(b) is None
    return {"err_a": err_a, "err_b": err_b}


def scenario_rejects_bad_input(cache_dir: str) -> list:
    import bpy

    from animateanymesh_addon import blender_writeback as bw
    from animateanymesh_addon.targets import point_cache, shape_keys
    from animateanymesh_addon import writeback as wb

    a, b = build_scene()
    point_cache.write_point_cache(b, trajectory(b, 4), cache_dir)
    b.data.shape_keys.use_relative = False
    messages = []
    for call in (lambda: shape_keys.write_shape_keys(a, np.zeros((4, 5, 3))),
                 lambda: shape_keys.write_shape_keys(a, trajectory(a, 4), frame_step=0),
                 lambda: point_cache.write_point_cache(a, trajectory(a, 4), cache_dir, frame_step=0.001),
                 lambda: shape_keys.write_shape_keys(bpy.data.objects.new("Empty", None), np.zeros((1, 1, 3))),
                 lambda: shape_keys.write_shape_keys(b, trajectory(b, 4))):
        try:
            call()
        except wb.WritebackError as exc:
            messages.append(str(exc))
        else:
            raise AssertionError("bad input was accepted")
    assert a.data.shape_keys is None and not a.modifiers  # nothing half-written
    # B's earlier point-cache result is still there: a refused write changes nothing
    assert bw.animation_info(b)["mode"] == "POINT_CACHE" and b.modifiers[0].type == "MESH_CACHE"
    assert [kb.name for kb in b.data.shape_keys.key_blocks] == ["Basis", "Smile"]
    return messages


def scenario_export(fmt: str, out_dir: str) -> dict:
    """Bake the scene, re-import the file into an empty scene and compare frame by frame."""
    import bpy

    from animateanymesh_addon.targets import point_cache, shape_keys
    from animateanymesh_addon import export
    from animateanymesh_addon import writeback as wb

    a, b = build_scene()
    fa, fb = trajectory(a, 12), trajectory(b, 8, phase=0.4)
    shape_keys.write_shape_keys(a, fa, frame_start=1, frame_step=1)
    point_cache.write_point_cache(b, fb, out_dir, frame_start=3, frame_step=1)  # ends at frame 10
    scene = bpy.context.scene

    check_frames = [1, 3, 6, 10, 12]
    expected = {}
    for t in check_frames:
        if fmt == "ALEMBIC":  # the evaluated mesh, modifiers included, is what Alembic bakes
            expected[t] = {o.name: evaluated_positions(o, t, world=True) for o in (a, b)}
        else:  # FBX / glTF: the shape-key mesh (modifiers not applied); B's cache as shape keys
            m_a, m_b = np.array(a.matrix_world), np.array(b.matrix_world)
            loc_b = wb.positions_at(fb, t, wb.Timeline(3, 1)) + smile_contribution(b, t)
            expected[t] = {"A": wb.positions_at(fa, t, wb.Timeline(1, 1)) @ m_a[:3, :3].T + m_a[:3, 3],
                           "B": loc_b @ m_b[:3, :3].T + m_b[:3, 3]}

    scene.frame_set(7)
    a.select_set(True)
    before = (scene.frame_start, scene.frame_end, scene.frame_current,
              [o.name for o in bpy.context.view_layer.objects if o.select_get()],
              [kb.name for kb in b.data.shape_keys.key_blocks],
              [(m.name, m.show_viewport, m.show_render) for m in b.modifiers])
    path = Path(out_dir) / f"anim{export.FORMAT_EXTENSIONS[fmt]}"
    apply_warnings = export.modifier_warnings([a, b], fmt, apply_modifiers=True)
    warnings = export.export_animation([a, b], path, fmt)
    assert path.is_file()
    after = (scene.frame_start, scene.frame_end, scene.frame_current,
             [o.name for o in bpy.context.view_layer.objects if o.select_get()],
             [kb.name for kb in b.data.shape_keys.key_blocks],
             [(m.name, m.show_viewport, m.show_render) for m in b.modifiers])
    assert after == before, (after, before)  # temporary keys gone, cache re-enabled, range back

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    if fmt == "FBX":
        bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)
    elif fmt == "ALEMBIC":
        bpy.ops.wm.alembic_import(filepath=str(path), set_frame_range=True)
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))
    meshes = {o.name.split(".")[0]: o for o in scene.objects if o.type == "MESH"}
    assert set(meshes) == {"A", "B"}, list(meshes)

    if fmt == "ALEMBIC":
        frame_range = (scene.frame_start, scene.frame_end)
    else:
        ranges = {name: tuple(o.data.shape_keys.animation_data.action.frame_range)
                  for name, o in meshes.items()}
        assert ranges["A"] == ranges["B"], ranges
        frame_range = ranges["A"]
        imported_keys = {name: [kb.name for kb in o.data.shape_keys.key_blocks]
                         for name, o in meshes.items()}
        assert imported_keys["A"][1:] == wb.shape_key_names("AAM", 12), imported_keys
    assert tuple(round(x) for x in frame_range) == (1, 12), frame_range

    errors = {}
    for t in check_frames:
        for name, obj in meshes.items():
            errors[f"{name}@{t}"] = point_set_distance(evaluated_positions(obj, t, world=True),
                                                       expected[t][name])
    return {"warnings": warnings, "errors": errors, "frame_range": list(frame_range),
            "apply_warnings": apply_warnings}


def scenario_installed_extension(zip_path: str, out_dir: str) -> dict:
    """Install the built zip as a user would, enable it, use it, disable it."""
    import sys as _sys

    import bpy

    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}, result
    package = "bl_ext.user_default.animateanymesh"
    assert package in bpy.context.preferences.addons.keys()
    addon = _sys.modules[package]
    assert Path(addon.__file__).parent.name == "animateanymesh"
    # the seam ships inside the extension and the add-on loads it from there
    protocol = _sys.modules[package + ".seam"].protocol

    # (read_factory_settings would also disable the add-on: reuse the startup scene instead)
    for other in list(bpy.context.scene.objects):
        bpy.data.objects.remove(other)
    obj = _mesh_object("A")
    shape_keys = _sys.modules[package + ".targets.shape_keys"]
    shape_keys.write_shape_keys(obj, trajectory(obj, 4), frame_start=1)
    bpy.context.view_layer.update()
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    out = Path(out_dir) / "from_operator.glb"
    assert bpy.ops.animateanymesh.export_animation(filepath=str(out), file_format="GLB") == {"FINISHED"}
    assert out.is_file()
    user_dir = bpy.utils.extension_path_user(package, path="cache", create=True)

    bpy.ops.preferences.addon_disable(module=package)
    assert not hasattr(bpy.types, "ANIMATEANYMESH_OT_export_animation")
    return {"protocol": protocol.PROTOCOL_VERSION, "user_dir": user_dir}


def scenario_failed_export_keeps_the_earlier_file(out_dir: str) -> dict:
    from animateanymesh_addon import export
    from animateanymesh_addon.targets import shape_keys

    a, _ = build_scene()
    shape_keys.write_shape_keys(a, trajectory(a, 4))
    path = Path(out_dir) / "anim.fbx"
    export.export_animation([a], path)
    before = path.read_bytes()

    def dies_halfway(staged, _apply):
        Path(staged).write_bytes(b"Kaydara FBX Binary, cut short")
        raise RuntimeError("Error: disk full")

    export._export_fbx = dies_halfway
    try:
        export.export_animation([a], path)
        refused = ""
    except export.ExportError as exc:
        refused = str(exc)
    return {"refused": refused, "intact": path.read_bytes() == before,
            "left": sorted(p.name for p in Path(out_dir).iterdir())}


# ------------------------------------------------------------------------------ tests

def test_shape_keys_play_the_trajectory_and_keep_the_artists_data():
    result = run_in_blender(MODULE, "scenario_shape_keys")
    assert result["err_a"] < ATOL and result["err_b"] < ATOL and result["err_b2"] < ATOL
    assert result["keys_a"] == 17


def test_point_cache_plays_the_trajectory_and_replaces_itself(tmp_path):
    result = run_in_blender(MODULE, "scenario_point_cache", cache_dir=str(tmp_path / "cache"))
    assert result["err_a"] < ATOL and result["err_b"] < ATOL


def test_bad_input_is_refused_with_a_fix(tmp_path):
    messages = run_in_blender(MODULE, "scenario_rejects_bad_input", cache_dir=str(tmp_path))
    assert "mesh changed after it was animated" in messages[0]
    assert "frame_step" in messages[1] and "0.01" in messages[2]
    assert "only mesh objects" in messages[3]
    assert "Absolute" in messages[4]


# glTF stores float32 morph deltas; FBX doubles; Alembic float32 positions
@pytest.mark.parametrize("fmt,tol", [("FBX", 1e-4), ("GLB", 1e-4), ("ALEMBIC", 1e-4)])
def test_export_round_trip(fmt, tol, tmp_path):
    result = run_in_blender(MODULE, "scenario_export", fmt=fmt, out_dir=str(tmp_path))
    worst = max(result["errors"].values())
    assert worst < tol, result["errors"]
    assert result["frame_range"] == [1, 12]
    if fmt == "ALEMBIC":
        assert result["warnings"] == [] and result["apply_warnings"] == []
    else:
        (dropped,) = result["apply_warnings"]  # with Apply Modifiers, B would lose its keys
        assert "'B'" in dropped and "drops its shape keys" in dropped  # B's Subdivision is not applied (it would drop the blend shapes), and we say so;
        # B's own Smile key adds to its cache-turned-blend-shapes in the file, and we say so
        subd, smile = result["warnings"]
        assert "'B'" in subd and "Subdivision" in subd and "not applied" in subd
        assert "'B'" in smile and "Smile" in smile


def test_built_zip_installs_and_runs_in_blender(tmp_path):
    zip_path = build_extension_zip(tmp_path / "dist")
    result = run_in_blender(MODULE, "scenario_installed_extension", zip_path=str(zip_path),
                            out_dir=str(tmp_path),
                            env={"BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")})
    assert result["protocol"] >= 1
    assert result["user_dir"].startswith(str(tmp_path / "blender_user"))


def test_build_fails_loudly_on_an_invalid_package(tmp_path):
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("aam_build", REPO / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    manifest = (REPO / "blender_manifest.toml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:  # a tagline may not end in punctuation
        zf.writestr("blender_manifest.toml", manifest.replace(
            'tagline = "Animate any mesh from a text prompt"', 'tagline = "Animates meshes."'))
        zf.writestr("__init__.py", "")
    with pytest.raises(build.BuildError, match="tagline"):
        build.validate(bad, None)
    no_init = tmp_path / "no_init.zip"
    with zipfile.ZipFile(no_init, "w") as zf:
        zf.writestr("blender_manifest.toml", manifest)
    with pytest.raises(build.BuildError, match="__init__.py"):
        build.validate(no_init, None)


@pytest.mark.blender
@requires_bpy
def test_a_failed_export_leaves_the_earlier_file_whole(tmp_path):
    r = run_in_blender(MODULE, "scenario_failed_export_keeps_the_earlier_file", out_dir=str(tmp_path))
    assert "disk full" in r["refused"] and r["intact"] and r["left"] == ["anim.fbx"]
