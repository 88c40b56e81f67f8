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


def _register_addon():
    import animateanymesh_addon

    animateanymesh_addon.register()


def _artist_animated_tube(name: str = "Tube"):
    """A tube bent by the artist's own shape key, keyed over frames 1-9 (not ours)."""
    import bpy

    obj = tube(name)
    obj.shape_key_add(name="Basis", from_mix=False)
    key = obj.shape_key_add(name="Bend", from_mix=False)
    rest = np.array([v.co[:] for v in obj.data.vertices])
    key.points.foreach_set("co", bend(rest, frames=4)[1].reshape(-1))
    for frame, value in ((1, 0.0), (5, 1.0), (9, 0.0)):
        key.value = value
        key.keyframe_insert("value", frame=frame)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 9
    return obj


def scenario_bake_operator(keep: str) -> dict:
    """Bake to Armature through the panel's operator: the artist's own animation goes on a copy
    (the original untouched), ours is replaced in place unless kept."""
    import bpy

    from animateanymesh_addon import blender_writeback as bw
    from animateanymesh_addon.targets import shape_keys

    bpy.ops.wm.read_factory_settings(use_empty=True)
    _register_addon()
    theirs = _artist_animated_tube("Theirs")
    ours = tube("Ours")
    ours.location = (3.0, 0.0, 0.0)
    rest = bw.rest_coordinates(ours).astype(np.float64)
    shape_keys.write_shape_keys(ours, bend(rest, frames=8), frame_start=1, frame_step=1)
    bpy.context.view_layer.update()
    expected = {o.name: [evaluated_positions(o, t, world=True) for t in range(1, 10)]
                for o in (theirs, ours)}
    for o in bpy.context.view_layer.objects:
        o.select_set(o.name in ("Theirs", "Ours"))
    bpy.context.view_layer.objects.active = ours
    bpy.context.scene.animateanymesh.bones = 5
    result = bpy.ops.animateanymesh.bake_armature(keep_vertex_animation=keep)
    out = {"result": sorted(result), "objects": sorted(o.name for o in bpy.data.objects)}
    out["theirs_key_animated"] = theirs.data.shape_keys.animation_data.action is not None
    out["ours_mode"] = (bw.animation_info(ours) or {}).get("mode")
    errors = {}
    for name, skinned in (("Theirs", "Theirs Baked"), ("Ours", "Ours" if keep == "NO" else "Ours Baked")):
        obj = bpy.data.objects[skinned]
        got = [evaluated_positions(obj, t, world=True) for t in range(1, 10)]
        diag = float(np.linalg.norm(np.ptp(expected[name][0], axis=0)))
        errors[name] = float(np.mean([np.linalg.norm(g - e, axis=1).mean()
                                      for g, e in zip(got, expected[name])])) / diag
        out[f"{name}_rig_mode"] = bw.animation_info(obj)["mode"]
        out[f"{name}_shape_keys"] = obj.data.shape_keys is not None
    out["errors"] = errors
    return out


def scenario_bad_input() -> dict:
    """Each refusal is one sentence, and nothing in the scene changes."""
    import bpy

    from animateanymesh_addon import armature_bake, session

    bpy.ops.wm.read_factory_settings(use_empty=True)
    _register_addon()
    still = tube("Still")
    moving = _artist_animated_tube("Moving")
    sub = moving.modifiers.new("Subd", "SUBSURF")
    sub.levels = 1

    def state():
        return (sorted(o.name for o in bpy.data.objects), len(bpy.data.armatures),
                {o.name: (len(o.modifiers), len(o.vertex_groups)) for o in bpy.data.objects})

    before = state()
    messages = {}
    cases = {"still": ([still], 4), "topology": ([moving], 4), "too_many": ([still], 200),
             "zero": ([still], 0), "nothing": ([], 4)}
    for case, (objs, bones) in cases.items():
        try:
            armature_bake.BakeRun(objs, bones)
            messages[case] = "accepted"
        except armature_bake.BakeError as exc:
            messages[case] = exc.message
    sub.show_viewport = False
    bpy.context.scene.frame_end = 1
    try:
        armature_bake.BakeRun([moving], 4)
        messages["one_frame"] = "accepted"
    except armature_bake.BakeError as exc:
        messages["one_frame"] = exc.message
    # through the operator: one report, CANCELLED, the outcome says why
    for o in bpy.context.view_layer.objects:
        o.select_set(o.name == "Still")
    try:   # an operator's error report comes back from bpy.ops as a RuntimeError
        bpy.ops.animateanymesh.bake_armature()
        messages["operator"] = "finished"
    except RuntimeError:
        messages["operator"] = session.last_outcome()[1]
    return {"messages": messages, "unchanged": state() == before}


def scenario_cancel() -> dict:
    import bpy

    from animateanymesh_addon import armature_bake

    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = _artist_animated_tube("Theirs")
    before = sorted(o.name for o in bpy.data.objects)
    run = armature_bake.BakeRun([obj], 8).start()
    run.poll()
    run.request_cancel()
    run.poll()
    try:
        run.apply()
        applied = "applied"
    except armature_bake.BakeError as exc:
        applied = exc.message
    return {"state": run.state, "applied": applied,
            "unchanged": sorted(o.name for o in bpy.data.objects) == before}


def test_bake_operator_puts_the_artists_animation_on_a_copy_and_replaces_ours():
    r = run_in_blender(MODULE, "scenario_bake_operator", keep="NO")
    assert r["result"] == ["FINISHED"], r
    assert r["objects"] == ["Ours", "Ours Rig", "Theirs", "Theirs Baked", "Theirs Baked Rig"]
    assert r["theirs_key_animated"] and r["ours_mode"] == "ARMATURE"
    assert r["Ours_rig_mode"] == r["Theirs_rig_mode"] == "ARMATURE"
    assert not r["Ours_shape_keys"] and not r["Theirs_shape_keys"]
    assert max(r["errors"].values()) < 0.01, r["errors"]   # mean vertex error < 1% of the size


def test_bake_operator_keeps_our_vertex_animation_when_asked():
    r = run_in_blender(MODULE, "scenario_bake_operator", keep="YES")
    assert r["result"] == ["FINISHED"], r
    assert "Ours Baked" in r["objects"] and r["ours_mode"] == "SHAPE_KEYS"
    assert max(r["errors"].values()) < 0.01, r["errors"]


def test_bake_refuses_bad_input_with_one_line_and_changes_nothing():
    r = run_in_blender(MODULE, "scenario_bad_input")
    m = r["messages"]
    assert "does not move" in m["still"] and "Fix:" in m["still"]
    assert "topology" in m["topology"] and "Subdivision" in m["topology"]
    assert "at most one bone per vertex" in m["too_many"]
    assert "out of range" in m["zero"]
    assert "no mesh is selected" in m["nothing"]
    assert "fewer than 2 frames" in m["one_frame"]
    assert m["operator"] == m["one_frame"].replace("Moving", "Still")
    assert all("\n" not in text and "Traceback" not in text
               for text in m.values() if isinstance(text, str))
    assert r["unchanged"]


def test_bake_cancel_leaves_the_scene_unchanged():
    r = run_in_blender(MODULE, "scenario_cancel")
    assert r["state"] == "cancelled" and "cancelled" in r["applied"] and r["unchanged"]
