"""Point caches travel with the .blend: relative paths into the file's own folder, copied on
Save As, readable by others, and tidied only when undo can no longer need them."""

from __future__ import annotations

import pytest

from blender_util import requires_bpy, run_in_blender

MODULE = "test_blender_point_cache_files"


def _frames(obj, count: int, phase: float):
    import numpy as np

    rest = np.array([v.co[:] for v in obj.data.vertices], np.float32)
    t = np.linspace(0.0, 1.0, count, dtype=np.float32)[:, None, None]
    return rest[None] + np.sin(3.0 * t + phase) * np.array([0.0, 0.0, 1.0], np.float32)


def _plays(obj, frames) -> float:
    """Largest distance between what Blender evaluates and the frames written (frame i at i+1)."""
    import numpy as np

    from blender_util import evaluated_positions

    return max(float(np.abs(evaluated_positions(obj, i + 1) - frames[i]).max()) for i in (0, 3, 5))


def scenario_caches_travel_with_the_blend(work: str) -> dict:
    import os
    import shutil
    from pathlib import Path

    import bpy

    import animateanymesh_addon
    from animateanymesh_addon import targets

    os.umask(0o022)
    root = Path(work)
    animateanymesh_addon.register()
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=1)
        obj = bpy.context.active_object
        name = obj.name  # the object itself is a new one in every file opened
        settings = targets.WriteSettings(1.0, 1.0)
        first = _frames(obj, 6, 0.0)
        waiting = Path(targets.write_animation(obj, first, "POINT_CACHE", settings).cache_path)
        out = {"waiting_in_user_folder": not bpy.data.filepath and waiting.is_file(),
               "mode": oct(waiting.stat().st_mode & 0o777)}

        (root / "a").mkdir()
        bpy.ops.wm.save_as_mainfile(filepath=str(root / "a" / "scene.blend"))
        mod = obj.modifiers[0]
        out["after_first_save"] = mod.filepath
        saved_first = root / "a" / "scene_pointcache" / waiting.name
        out["copied"] = saved_first.is_file()

        second = _frames(obj, 6, 1.0)  # re-animate the saved file: written into its own folder
        info = targets.write_animation(obj, second, "POINT_CACHE", settings)
        out["second_path"] = obj.modifiers[0].filepath
        out["second_in_own_folder"] = Path(info.cache_path).parent == root / "a" / "scene_pointcache"
        (root / "a" / "scene_pointcache" / "artist.pc2").write_bytes(b"not ours")
        bpy.ops.wm.save_mainfile()

        # the .blend and its cache folder move together, as to a render farm
        shutil.move(str(root / "a"), str(root / "farm"))
        bpy.ops.wm.open_mainfile(filepath=str(root / "farm" / "scene.blend"))
        obj = bpy.data.objects[name]
        out["waiting_removed_on_close"] = not waiting.exists()
        out["unused_swept_on_open"] = not (root / "farm" / "scene_pointcache" / waiting.name).exists()
        out["artist_file_kept"] = (root / "farm" / "scene_pointcache" / "artist.pc2").is_file()
        out["moved_error"] = _plays(obj, second)

        (root / "other").mkdir()
        bpy.ops.wm.save_as_mainfile(filepath=str(root / "other" / "copy.blend"))
        out["save_as_path"] = obj.modifiers[0].filepath
        out["original_kept"] = (root / "farm" / "scene_pointcache" / Path(info.cache_path).name).is_file()
        bpy.ops.wm.open_mainfile(filepath=str(root / "other" / "copy.blend"))
        out["save_as_error"] = _plays(bpy.data.objects[name], second)
        return out
    finally:
        animateanymesh_addon.unregister()


@pytest.mark.blender
@requires_bpy
def test_point_caches_travel_with_the_blend_and_are_tidied_safely(tmp_path):
    r = run_in_blender(MODULE, "scenario_caches_travel_with_the_blend", work=str(tmp_path))
    assert r["waiting_in_user_folder"] and r["mode"] == "0o644"
    assert r["after_first_save"].startswith("//scene_pointcache/") and r["copied"]
    assert r["second_path"].startswith("//scene_pointcache/") and r["second_in_own_folder"]
    assert r["waiting_removed_on_close"] and r["unused_swept_on_open"] and r["artist_file_kept"]
    assert r["moved_error"] < 1e-5
    assert r["save_as_path"].startswith("//copy_pointcache/") and r["original_kept"]
    assert r["save_as_error"] < 1e-5
