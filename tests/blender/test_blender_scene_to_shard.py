"""tools/blender_scene_to_shard.py: animated Blender scenes become training shards.

Real bpy, each scenario in a subprocess so Blender's state never leaks into other tests; the
shards are read back with the backend's reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from backend.data import read_shard

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# Blender scenes (real bpy, in a subprocess so Blender's state never leaks into other tests)
# ---------------------------------------------------------------------------------------------

_BLENDER_SCENE = textwrap.dedent("""
    import json, sys
    import bpy
    sys.path.insert(0, "tools")
    from blender_scene_to_shard import export_scene_samples, ExportError

    out = sys.argv[1]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 10

    def mesh_obj(name, verts, faces):
        me = bpy.data.meshes.new(name)
        me.from_pydata(verts, [], faces)
        me.update()
        ob = bpy.data.objects.new(name, me)
        scene.collection.objects.link(ob)
        return ob

    # a 3-ring column deformed by a one-bone armature that tips 0.8 rad about X
    arm = bpy.data.armatures.new("Rig")
    rig = bpy.data.objects.new("Rig", arm)
    scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    bone = arm.edit_bones.new("Bone")
    bone.head, bone.tail = (0, 0, 0), (0, 0, 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    ring = ((-.1, -.1), (.1, -.1), (.1, .1), (-.1, .1))
    verts = [(x, y, z) for z in (0.0, 0.5, 1.0) for (x, y) in ring]
    quads = [(k*4+j, k*4+(j+1)%4, k*4+(j+1)%4+4, k*4+j+4) for k in range(2) for j in range(4)]
    col = mesh_obj("Column", verts, quads)
    col.vertex_groups.new(name="Bone").add(list(range(len(verts))), 1.0, "REPLACE")
    col.modifiers.new("Armature", "ARMATURE").object = rig
    pb = rig.pose.bones["Bone"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (0, 0, 0); pb.keyframe_insert("rotation_euler", frame=1)
    pb.rotation_euler = (0.8, 0, 0); pb.keyframe_insert("rotation_euler", frame=10)
    rig.animation_data.action.name = "Bend_Forward.001"

    # a 3x3 sheet whose shape key raises vertex i by 0.1*i, keyed 0 -> 1; moved to x=3
    grid = [(x*0.5, y*0.5, 0.0) for y in range(3) for x in range(3)]
    cells = [(y*3+x, y*3+x+1, (y+1)*3+x+1, (y+1)*3+x) for y in range(2) for x in range(2)]
    sheet = mesh_obj("Sheet", grid, cells)
    sheet.location = (3, 0, 0)
    sheet.shape_key_add(name="Basis")
    key = sheet.shape_key_add(name="Up", from_mix=False)
    for i, p in enumerate(key.data):
        p.co.z = 0.1 * i
    key.value = 0.0; key.keyframe_insert("value", frame=1)
    key.value = 1.0; key.keyframe_insert("value", frame=10)
    sheet["aam_caption"] = "a sheet bulges up|the sheet rises"

    mesh_obj("Static", [(0, 0, 5), (1, 0, 5), (0, 1, 5)], [(0, 1, 2)])
    report = export_scene_samples(out, T=16)
    try:
        export_scene_samples(out + ".x.npz", objects=["Static"], frame_start=5, frame_end=2)
        range_error = ""
    except ExportError as exc:
        range_error = str(exc)
    print("REPORT" + json.dumps({"report": report, "range_error": range_error,
                                 "frame_after": scene.frame_current}))
""")


@pytest.mark.blender
def test_blender_scene_export_reads_back(tmp_path):
    pytest.importorskip("bpy")
    out = tmp_path / "scene.npz"
    proc = subprocess.run([sys.executable, "-c", _BLENDER_SCENE, str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("REPORT"))
    info = json.loads(line[len("REPORT"):])
    status = {e["object"]: e for e in info["report"]}
    assert status["Static"]["status"] == "skipped" and "does not move" in status["Static"]["reason"]
    assert "frame_end >= frame_start" in info["range_error"]
    assert info["frame_after"] == 1  # the scene is left on the frame it was on

    samples = read_shard(out)
    by_name = {s.meta["object"]: s for s in samples}
    assert set(by_name) == {"Column", "Sheet"}
    col, sheet = by_name["Column"], by_name["Sheet"]
    assert col.frames.shape == (16, 12, 3) and sheet.frames.shape == (16, 9, 3)
    assert col.faces.shape == (16, 3) and sheet.faces.shape == (8, 3)  # quads triangulated
    assert col.captions == ["bend forward"] and col.meta["caption_from"] == "rig action"
    assert sheet.captions == ["a sheet bulges up", "the sheet rises"]
    assert col.meta["source_frames"] == 10 and col.meta["space"] == "world"
    assert col.family is None and col.source.endswith(":Column")

    # armature: last frame = rest rotated 0.8 rad about X around the bone head (origin)
    rest = col.frames[0].astype(np.float64)
    c, s_ = np.cos(0.8), np.sin(0.8)
    rot = np.array([[1, 0, 0], [0, c, -s_], [0, s_, c]])
    np.testing.assert_allclose(col.frames[-1], rest @ rot.T, atol=1e-5)
    assert np.allclose(rest[:, 2], np.repeat([0.0, 0.5, 1.0], 4))
    # shape keys in world space: x shifted by the object location, z = 0.1 * i at the end
    np.testing.assert_allclose(sheet.frames[0][:, 0] - 3.0, np.tile([0, 0.5, 1.0], 3), atol=1e-6)
    np.testing.assert_allclose(sheet.frames[0][:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(sheet.frames[-1][:, 2], 0.1 * np.arange(9), atol=1e-5)
    # in between the motion is monotone (keyframe easing, then resampling)
    z = sheet.frames[:, 8, 2]
    assert np.all(np.diff(z) >= -1e-6) and 0.0 < z[8] < 0.8


@pytest.mark.blender
def test_blender_export_command_line(tmp_path):
    """Headless use on Blender's default scene: a static cube is skipped unless named."""
    pytest.importorskip("bpy")
    script = REPO / "tools" / "blender_scene_to_shard.py"
    out = tmp_path / "cube.npz"
    auto = subprocess.run([sys.executable, str(script), "--", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert auto.returncode == 2 and "nothing to export" in auto.stderr and not out.exists()
    named = subprocess.run([sys.executable, str(script), "--", "--out", str(out), "--objects",
                            "Cube", "--T", "4", "--start", "1", "--end", "3"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert named.returncode == 0, named.stderr[-2000:]
    (cube,) = read_shard(out)
    assert cube.frames.shape == (4, 8, 3) and cube.faces.shape == (12, 3)
    assert np.all(cube.frames == cube.frames[0]) and cube.captions == []
    assert "exported without a caption" in named.stdout
