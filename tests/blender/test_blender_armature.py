"""Bake to Armature in real Blender: the rig Blender deforms plays the solved skin.

A tube that bends, twists and breathes (a per-axis scale the root bone must carry) is written
with the armature target; Blender's own evaluation of the skinned mesh is held against the
solver's reconstruction, against the target's frame reader and against the vertex animation.
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_util import evaluated_positions, requires_bpy, run_in_blender

MODULE = "test_blender_armature"
pytestmark = [pytest.mark.blender, requires_bpy]


# ------------------------------------------------------------------------------ in Blender

def tube(name: str = "Tube", rings: int = 12, sides: int = 10, parent=None):
    import bpy

    verts = [(0.3 * np.cos(a), 0.3 * np.sin(a), 0.2 * r)
             for r in range(rings) for a in np.linspace(0, 2 * np.pi, sides, endpoint=False)]
    faces = [(r * sides + s, r * sides + (s + 1) % sides, (r + 1) * sides + (s + 1) % sides,
              (r + 1) * sides + s) for r in range(rings - 1) for s in range(sides)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = (1.0, -2.0, 0.5)
    obj.rotation_euler = (0.0, 0.0, 0.7)
    if parent is not None:
        obj.parent = parent
    return obj


def bend(rest: np.ndarray, frames: int = 12) -> np.ndarray:
    """Each ring turns about X by an angle that grows with its height, the top twists about Z,
    and the whole tube breathes: wider in X, shorter in Z (a per-axis scale)."""
    out = []
    height = rest[:, 2].max()
    for f in range(frames):
        phase = np.sin(2 * np.pi * f / frames)
        h = rest[:, 2] / height
        a = 0.6 * phase * h
        tw = 0.4 * phase * h
        x = rest[:, 0] * np.cos(tw) - rest[:, 1] * np.sin(tw)
        y = rest[:, 0] * np.sin(tw) + rest[:, 1] * np.cos(tw)
        z = rest[:, 2]
        y, z = y * np.cos(a) - z * np.sin(a), y * np.sin(a) + z * np.cos(a)
        s = 1.0 + 0.15 * phase
        out.append(np.stack([x * s, y, z / s], axis=1))
    return np.array(out, dtype=np.float32)


def _counts():
    import bpy

    return {"objects": len(bpy.data.objects), "armatures": len(bpy.data.armatures),
            "actions": len(bpy.data.actions)}


def scenario_bake_plays_the_skin(bones: int) -> dict:
    import bpy

    from animateanymesh_addon import blender_writeback as bw
    from animateanymesh_addon import skinning, targets
    from animateanymesh_addon.targets import armature

    bpy.ops.wm.read_factory_settings(use_empty=True)
    holder = bpy.data.objects.new("Holder", None)
    bpy.context.scene.collection.objects.link(holder)
    holder.location = (0.0, 0.0, 1.0)
    obj = tube(parent=holder)
    bpy.context.view_layer.update()
    before = {"world": np.array(obj.matrix_world).tolist(), "parent": obj.parent.name,
              "counts": _counts(), "modifiers": len(obj.modifiers), "groups": len(obj.vertex_groups)}
    rest = bw.rest_coordinates(obj).astype(np.float64)
    frames = bend(rest)
    settings = targets.WriteSettings(frame_start=1, frame_step=2, bones=bones)
    info = targets.write_animation(obj, frames, "ARMATURE", settings)
    record = bw.animation_info(obj)
    arm = bpy.data.objects[record["armature"]]

    # the solver's skin, again in this process, to compare what Blender plays with it
    flat, sizes = bw.polygons(obj)
    skin = armature.solve_job(obj, frames, bones).run_blocking()
    solved = skin.deform()
    read = targets.animation_frames(obj)
    evaluated = np.array([evaluated_positions(obj, t) for t in settings.timeline.times(len(frames))])
    world_ok = np.abs(np.array(obj.matrix_world) - np.array(before["world"])).max()
    result = {
        "info": [info.mode, info.num_frames, info.frame_start, info.frame_end],
        "bones_in_rig": len(arm.data.bones), "groups": len(obj.vertex_groups),
        "max_influences": max(len(v.groups) for v in obj.data.vertices),
        "blender_vs_reader": float(np.abs(evaluated - read).max()),
        "reader_vs_solver": float(np.abs(read - solved).max()),
        "error": skinning.error_stats(evaluated, frames, rest),
        "world_moved": float(world_ok),
        "modifier_first": obj.modifiers[0].type,
        "parent_in_rig": obj.parent.name, "arm_parent": arm.parent.name,
    }
    # removing restores what was there, and leaves nothing behind
    assert targets.remove_animation(obj)
    bpy.context.view_layer.update()
    result["after_remove"] = {"world": float(np.abs(np.array(obj.matrix_world)
                                                    - np.array(before["world"])).max()),
                              "parent": obj.parent.name, "counts": _counts(),
                              "modifiers": len(obj.modifiers), "groups": len(obj.vertex_groups)}
    result["before"] = {k: before[k] for k in ("parent", "counts", "modifiers", "groups")}
    return result


# ------------------------------------------------------------------------------ tests

def test_bake_plays_the_solved_skin_and_removes_cleanly():
    r = run_in_blender(MODULE, "scenario_bake_plays_the_skin", bones=6)
    assert r["info"] == ["ARMATURE", 12, 1.0, 23.0]
    assert r["bones_in_rig"] == 7 and r["groups"] == 6   # the root plus six deforming bones
    assert r["max_influences"] <= 4
    assert r["modifier_first"] == "ARMATURE" and r["parent_in_rig"] == "Tube Rig"
    assert r["arm_parent"] == "Holder" and r["world_moved"] < 1e-6
    # Blender's armature deformation is the reader's, which is the solver's skin
    assert r["blender_vs_reader"] < 1e-4, r
    assert r["reader_vs_solver"] < 1e-4, r
    assert r["error"]["mean"] < 0.005 and r["error"]["share_of_motion"] < 0.1, r["error"]
    after, before = r["after_remove"], r["before"]
    assert after["world"] < 1e-6 and after["parent"] == before["parent"]
    assert {k: after[k] for k in ("counts", "modifiers", "groups")} == \
        {k: before[k] for k in ("counts", "modifiers", "groups")}
