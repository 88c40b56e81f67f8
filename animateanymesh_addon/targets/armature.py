"""Armature: the animation as a skinned skeleton that game engines and FBX / glTF take.

Skinning decomposition (skinning.py, in a child process: skin_job.py) turns the frames into a
root bone (whole-body scale and translation) with rigid deforming bones under it, at most four
per vertex. What a write makes, and its record lists: an Armature object beside the mesh, with
its own action (one key per frame on every bone); one vertex group per deforming bone on the
mesh; an Armature modifier first in the stack; the mesh parented to the armature (where the
mesh's parent and transform were is kept, and restored on remove).
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from .. import actions, skin_job, skinning
from .. import blender_writeback as bw
from .. import writeback as wb
from . import Target, WriteSettings, register, remove_animation

MODIFIER_NAME = "AAM Armature"
ROOT_NAME = "AAM_Root"
BONE_PREFIX = "AAM_Bone_"
CHANNELS = (("location", 3), ("rotation_quaternion", 4), ("scale", 3))


def _flat(matrix) -> list[float]:
    return [float(x) for row in matrix for x in row]


def _matrix(values) -> Matrix:
    v = list(values)
    return Matrix([v[0:4], v[4:8], v[8:12], v[12:16]])


def check_bakeable(obj, bones: int) -> None:
    bw.check_object(obj)
    if bpy.context.mode != "OBJECT":
        raise wb.WritebackError(f"Blender is in {bpy.context.mode.replace('_', ' ').title()} mode; a "
                                "bake creates bones in the armature's Edit Mode. Fix: switch to "
                                "Object Mode first.")
    try:
        skinning.check_bones(bones, len(obj.data.vertices))
    except skinning.SkinningError as exc:
        raise wb.WritebackError(f"'{obj.name}': {exc}") from None


def solve_job(obj, frames, bones: int, label: str = "") -> skin_job.SkinJob:
    """A (not yet started) solve of `frames` on `obj`'s rest shape."""
    flat, sizes = bw.polygons(obj)
    try:
        return skin_job.SkinJob(bw.rest_coordinates(obj), frames, flat, sizes, bones,
                                label=label or obj.name)
    except skinning.SkinningError as exc:
        raise wb.WritebackError(f"'{obj.name}': {exc}") from None


# ----------------------------------------------------------------------------- building the rig

def _link_like(new, obj) -> None:
    collections = list(obj.users_collection) or [bpy.context.scene.collection]
    for coll in collections:
        coll.objects.link(new)


def _create_bones(arm, skin: skinning.Skin, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Make the root and the deforming bones in edit mode; return the rest matrices Blender
    actually stored (the roll is rounded there, and the keys must match what it holds)."""
    root_rest, root_length = skinning.root_rest_matrix(skin.rest)
    bone_rest, lengths = skinning.bone_rest_matrices(skin.rest, skin.bone_index, skin.bone_weight,
                                                     skin.num_bones)
    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit = arm.data.edit_bones
        root = edit.new(ROOT_NAME)
        root.head = root_rest[:3, 3]
        root.tail = root_rest[:3, 3] + np.array([0.0, root_length, 0.0])
        root.roll = 0.0
        root.use_deform = False
        for name, rest, length in zip(names, bone_rest, lengths):
            bone = edit.new(name)
            bone.head, bone.tail = (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)
            bone.matrix = Matrix(rest.tolist())
            bone.length = float(length)
            bone.parent = root
            bone.use_connect = False
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous
    stored_root = np.array(arm.data.bones[ROOT_NAME].matrix_local, dtype=np.float64)
    stored = np.array([np.array(arm.data.bones[n].matrix_local) for n in names], dtype=np.float64)
    return stored_root, stored


def _key_bones(arm, skin: skinning.Skin, root_rest, bone_rest, names, timeline: wb.Timeline,
               interpolation: str) -> str:
    root_basis, bone_basis = skinning.pose_basis(root_rest, bone_rest, skin)
    times = timeline.times(skin.num_frames)
    fcurves, action, _ = actions.fcurve_collection(arm, True, f"{arm.name} Action", "OBJECT")
    channels = [(ROOT_NAME, *skinning.decompose(root_basis))]
    loc, quat, scale = skinning.decompose(bone_basis)
    channels += [(name, loc[:, b], quat[:, b], scale[:, b]) for b, name in enumerate(names)]
    for name, *values in channels:
        for (prop, size), value in zip(CHANNELS, values):
            for i in range(size):
                fc = fcurves.new(f'pose.bones["{name}"].{prop}', index=i)
                actions.set_keys(fc, times, value[:, i], interpolation)
    return action.name


def _vertex_groups(obj, skin: skinning.Skin) -> list[str]:
    names = []
    for b in range(skin.num_bones):
        group = obj.vertex_groups.new(name=f"{BONE_PREFIX}{b:03d}")
        names.append(group.name)   # Blender renames on a clash: the bone takes the same name
        rows, cols = np.nonzero((skin.bone_index == b) & (skin.bone_weight > 0))
        for i, w in zip(rows.tolist(), skin.bone_weight[rows, cols].tolist()):
            group.add([i], w, "REPLACE")
    return names


def build_rig(obj, skin: skinning.Skin, timeline: wb.Timeline, interpolation: str) -> dict:
    """Make the armature, weights, modifier and keys for `skin` on `obj`; the record's body."""
    record = {"parent": obj.parent.name if obj.parent else "", "parent_type": obj.parent_type,
              "parent_bone": obj.parent_bone, "parent_inverse": _flat(obj.matrix_parent_inverse),
              "basis": _flat(obj.matrix_basis)}
    data = bpy.data.armatures.new(f"{obj.name} Rig")
    arm = bpy.data.objects.new(f"{obj.name} Rig", data)
    _link_like(arm, obj)
    arm.parent = obj.parent
    if obj.parent is not None:
        arm.parent_type, arm.parent_bone = obj.parent_type, obj.parent_bone
        arm.matrix_parent_inverse = obj.matrix_parent_inverse.copy()
    arm.matrix_basis = obj.matrix_basis.copy()
    arm.show_in_front = True

    names = _vertex_groups(obj, skin)
    root_rest, bone_rest = _create_bones(arm, skin, names)
    action = _key_bones(arm, skin, root_rest, bone_rest, names, timeline, interpolation)

    mod = obj.modifiers.new(MODIFIER_NAME, "ARMATURE")
    mod.object = arm
    mod.use_vertex_groups = True
    obj.modifiers.move(len(obj.modifiers) - 1, 0)   # before subdivision and the like
    obj.parent = arm
    obj.parent_type = "OBJECT"
    obj.matrix_parent_inverse = Matrix.Identity(4)
    obj.matrix_basis = Matrix.Identity(4)
    record.update({"armature": arm.name, "armature_data": data.name, "action": action,
                   "bones": names, "modifier": mod.name, "num_bones": skin.num_bones})
    return record


def remove_rig(obj, record: dict) -> bool:
    removed = False
    mod = obj.modifiers.get(record.get("modifier", ""))
    if mod is not None and mod.type == "ARMATURE":
        obj.modifiers.remove(mod)
        removed = True
    for name in record.get("bones", []):
        group = obj.vertex_groups.get(name)
        if group is not None:
            obj.vertex_groups.remove(group)
            removed = True
    arm = bpy.data.objects.get(record.get("armature", ""))
    if arm is not None and obj.parent == arm:
        world = obj.matrix_world.copy()
        parent = bpy.data.objects.get(record.get("parent", ""))
        obj.parent = parent
        if parent is not None:
            obj.parent_type = record.get("parent_type", "OBJECT")
            obj.parent_bone = record.get("parent_bone", "")
        obj.matrix_parent_inverse = _matrix(record["parent_inverse"])
        obj.matrix_basis = _matrix(record["basis"])
        if parent is None and record.get("parent"):
            obj.matrix_world = world   # its old parent is gone: stay where it is
    action = bpy.data.actions.get(record.get("action", ""))
    if arm is not None and arm.type == "ARMATURE":
        data = arm.data
        bpy.data.objects.remove(arm)
        if data.users == 0:
            bpy.data.armatures.remove(data)
        removed = True
    if action is not None and action.users == 0:
        bpy.data.actions.remove(action)
    obj.update_tag(refresh={"OBJECT", "DATA"})
    return removed


# ----------------------------------------------------------------------------- reading it back

def _fcurve_values(arm, times: np.ndarray) -> dict:
    fcurves, _, _ = actions.fcurve_collection(arm, False, "", "OBJECT")
    if fcurves is None:
        return {}
    return {(fc.data_path, fc.array_index): np.array([fc.evaluate(t) for t in times])
            for fc in fcurves}


def _basis(values: dict, name: str, count: int) -> np.ndarray:
    def channel(prop, size, default):
        return np.stack([values.get((f'pose.bones["{name}"].{prop}', i),
                                    np.full(count, default[i])) for i in range(size)], axis=-1)

    return skinning.compose(channel("location", 3, (0, 0, 0)),
                            channel("rotation_quaternion", 4, (1, 0, 0, 0)),
                            channel("scale", 3, (1, 1, 1)))


def vertex_weights(obj, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) bone indices and weights from the vertex groups named `names`, K = the most any
    vertex has (our bake writes at most skinning.MAX_INFLUENCES)."""
    slot = {obj.vertex_groups[n].index: b for b, n in enumerate(names) if n in obj.vertex_groups}
    rows = [[(slot[g.group], g.weight) for g in v.groups if g.group in slot]
            for v in obj.data.vertices]
    k = max((len(r) for r in rows), default=1) or 1
    index = np.zeros((len(rows), k), dtype=np.int32)
    weight = np.zeros((len(rows), k), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, (b, w) in enumerate(row):
            index[i, j], weight[i, j] = b, w
    total = weight.sum(axis=1, keepdims=True)
    return index, np.where(total > 0, weight / np.where(total > 0, total, 1), 0)


def read_rig_frames(obj, record: dict) -> np.ndarray:
    """The skinned frames at the keys, computed the way Blender's armature deforms (so tests
    can hold the two against each other)."""
    arm = bpy.data.objects.get(record.get("armature", ""))
    names = list(record.get("bones", []))
    if arm is None or arm.type != "ARMATURE" or any(n not in arm.data.bones for n in names) \
            or ROOT_NAME not in arm.data.bones:
        raise wb.WritebackError(f"the AnimateAnyMesh armature of '{obj.name}' was removed or "
                                "renamed. Fix: bake or animate the object again.")
    t = int(record["num_frames"])
    times = wb.Timeline(float(record["frame_start"]), float(record["frame_step"])).times(t)
    values = _fcurve_values(arm, times)
    root_rest = np.array(arm.data.bones[ROOT_NAME].matrix_local, dtype=np.float64)
    bone_rest = np.array([np.array(arm.data.bones[n].matrix_local) for n in names], dtype=np.float64)
    root_basis = _basis(values, ROOT_NAME, t)
    bone_basis = np.stack([_basis(values, n, t) for n in names], axis=1)
    deform = skinning.pose_deformation(root_rest, bone_rest, root_basis, bone_basis)
    index, weight = vertex_weights(obj, names)
    return skinning.linear_blend(bw.rest_coordinates(obj), index, weight, deform).astype(np.float32)


# ----------------------------------------------------------------------------- the target

def write_rig(obj, frames, settings: WriteSettings, skin: skinning.Skin | None = None,
              on_progress=None) -> bw.WritebackInfo:
    """Replace any earlier result of ours on `obj` with `frames` baked to an armature. Without
    `skin` the solve runs here and waits (headless); the panel solves first (solve_job)."""
    check_bakeable(obj, settings.bones)
    f = bw.prepared_frames(obj, frames, settings.anchor_rest)
    if skin is None:
        try:
            skin = solve_job(obj, f, settings.bones).run_blocking(on_progress)
        except skin_job.SkinJobError as exc:
            raise wb.WritebackError(f"'{obj.name}': {exc}") from None
    if skin.rest.shape != (len(obj.data.vertices), 3) or skin.num_frames != len(f):
        raise wb.WritebackError(f"the skeleton solved for '{obj.name}' no longer fits it (the mesh "
                                "or the clip changed meanwhile). Fix: bake again.")
    timeline = settings.timeline
    remove_animation(obj)
    body = build_rig(obj, skin, timeline, settings.interpolation)
    t = skin.num_frames
    bw.store_record(obj, {"mode": Armature.name, "num_frames": t,
                          "frame_start": timeline.frame_start, "frame_step": timeline.frame_step,
                          "interpolation": settings.interpolation, **body})
    warnings = []
    if skin.num_bones < settings.bones:
        warnings.append(f"'{obj.name}': {skin.num_bones} of {settings.bones} bones were used; the "
                        "motion has no more distinct parts.")
    return bw.WritebackInfo(Armature.name, obj.name, t, timeline.frame_start,
                            timeline.frame_end(t), warnings=warnings)


@register
class Armature(Target):
    name = "ARMATURE"
    cli_name = "armature"
    label = "Armature"
    description = ("A skeleton with skin weights (at most 4 bones per vertex), one key per frame: "
                   "for game engines, FBX and glTF skins")
    summary = "an armature"
    order = 20
    solves = True

    def check_settings(self, settings: WriteSettings) -> None:
        super().check_settings(settings)
        if isinstance(settings.bones, bool) or not 1 <= int(settings.bones) <= skinning.MAX_BONES:
            raise wb.WritebackError(f"bone count {settings.bones!r} is out of range: use 1 to "
                                    f"{skinning.MAX_BONES}.")

    def check(self, obj, settings: WriteSettings) -> None:
        check_bakeable(obj, settings.bones)

    def solve_job(self, obj, frames, settings: WriteSettings):
        return solve_job(obj, bw.prepared_frames(obj, frames, settings.anchor_rest), settings.bones)

    def write(self, obj, frames, settings: WriteSettings, prepared=None) -> bw.WritebackInfo:
        return write_rig(obj, frames, settings, prepared)

    def remove(self, obj, record: dict) -> bool:
        return remove_rig(obj, record)

    def read_frames(self, obj, record: dict) -> np.ndarray:
        return read_rig_frames(obj, record)

    def owned_modifiers(self, obj, record: dict) -> list[str]:
        return [record.get("modifier", MODIFIER_NAME)]

    def export_companions(self, obj, record: dict) -> list:
        arm = bpy.data.objects.get(record.get("armature", ""))
        return [arm] if arm is not None and arm.type == "ARMATURE" else []
