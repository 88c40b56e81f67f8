"""A write-back target is one module: dropped into targets/, it reaches every surface.

The scenario copies the add-on (and the seam beside it) to a temporary folder, adds one module
with a toy target, and checks in real Blender that the panel's Write menu, the operator, the
headless CLI, the controller's write, the frame reader and Remove Animation all take it up.
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_util import REPO, requires_bpy, run_in_blender

MODULE = "test_blender_targets"

# The whole target: frames kept in a float array property on the mesh.
TOY_TARGET = '''
import numpy as np

from .. import blender_writeback as bw
from . import Target, register, remove_animation


@register
class ToyFrames(Target):
    name = "TOY_FRAMES"
    cli_name = "toyframes"
    label = "Toy Frames"
    description = "Frames kept in a custom property (test only)"
    summary = "toy frames"
    order = 50

    def write(self, obj, frames, settings):
        f = bw.prepared_frames(obj, frames, settings.anchor_rest)
        remove_animation(obj)
        obj.data["toy_frames"] = f.reshape(-1).tolist()
        t = settings.timeline
        bw.store_record(obj, {"mode": self.name, "num_frames": f.shape[0],
                              "frame_start": t.frame_start, "frame_step": t.frame_step})
        return bw.WritebackInfo(self.name, obj.name, f.shape[0], t.frame_start,
                                t.frame_end(f.shape[0]))

    def remove(self, obj, record):
        return obj.data.pop("toy_frames", None) is not None

    def read_frames(self, obj, record):
        flat = np.asarray(obj.data["toy_frames"], dtype=np.float32)
        return flat.reshape(int(record["num_frames"]), len(obj.data.vertices), 3)
'''


def scenario_a_new_target_module(work: str) -> dict:
    import shutil
    import sys
    from pathlib import Path

    import bpy

    root = Path(work)
    shutil.copytree(REPO / "animateanymesh_addon", root / "animateanymesh_addon",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "aam_seam", root / "aam_seam", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "animateanymesh_addon" / "targets" / "toy_frames.py").write_text(TOY_TARGET)
    for name in [m for m in sys.modules if m.split(".")[0] == "animateanymesh_addon"]:
        del sys.modules[name]  # the repository's copy, if the child imported it already
    sys.path.insert(0, str(root))
    import animateanymesh_addon
    from animateanymesh_addon import cli, controller, targets

    assert Path(animateanymesh_addon.__file__).parent == root / "animateanymesh_addon"
    animateanymesh_addon.register()
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.mesh.primitive_cube_add()
        obj = bpy.context.active_object
        rest = np.array([v.co[:] for v in obj.data.vertices], np.float32)
        frames = rest[None] + np.linspace(0, 1, 5, dtype=np.float32)[:, None, None]

        menu = [item.identifier for item in
                bpy.types.Scene.bl_rna.properties["animateanymesh"].fixed_type.properties["mode"].enum_items]
        operator = [item.identifier for item in
                    bpy.ops.animateanymesh.animate.get_rna_type().properties["mode"].enum_items]
        options = controller.AnimateOptions(prompt="spin", mode="TOY_FRAMES", frame_start=3)
        options.check()
        (info,) = controller.write_results({obj.name: frames}, options)
        read_back = targets.animation_frames(obj)
        summary = targets.target_of(obj)[0].summary
        removed = targets.remove_animation(obj)
        return {"menu": menu, "operator": operator, "cli": sorted(cli.write_targets()),
                "info": [info.mode, info.num_frames, info.frame_start],
                "read_back_error": float(np.abs(read_back - frames).max()), "summary": summary,
                "removed": removed, "left": "toy_frames" in obj.data, "record": obj.get("animateanymesh")}
    finally:
        animateanymesh_addon.unregister()


@pytest.mark.blender
@requires_bpy
def test_a_target_module_dropped_into_targets_reaches_every_surface(tmp_path):
    r = run_in_blender(MODULE, "scenario_a_new_target_module", work=str(tmp_path))
    assert r["menu"] == r["operator"] == ["SHAPE_KEYS", "POINT_CACHE", "ARMATURE", "TOY_FRAMES"]
    assert r["cli"] == ["armature", "pointcache", "shapekeys", "toyframes"]
    assert r["info"] == ["TOY_FRAMES", 5, 3.0] and r["read_back_error"] == 0.0
    assert r["summary"] == "toy frames"
    assert r["removed"] and not r["left"] and r["record"] is None
