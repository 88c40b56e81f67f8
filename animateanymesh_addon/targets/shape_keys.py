"""Shape keys: one relative shape key per model frame, keyed so neighbouring keys cross-fade.

Exports natively to FBX blend shapes and glTF morph targets. The keys and their F-curves live on
the mesh's Key datablock; the artist's own keys, actions and slots stay untouched (we reuse the
action the Key already has, so their shape-key animation keeps playing).
"""

from __future__ import annotations

import re

import bpy
import numpy as np

from .. import actions
from .. import blender_writeback as bw
from .. import writeback as wb
from . import Target, WriteSettings, register, remove_animation

DEFAULT_PREFIX = "AAM"
# ------------------------------------------------------------------------------ actions

def _data_path(key_name: str) -> str:
    return f'key_blocks["{key_name}"].value'


def _fcurve_collection(key, create: bool, action_name: str = ""):
    return actions.fcurve_collection(key, create, action_name or f"{DEFAULT_PREFIX}_{key.user.name}",
                                     "KEY")


def _key_fcurves(fcurves, names: set[str]):
    pattern = re.compile(r'^key_blocks\["(.*)"\]\.value$')
    out = []
    for fc in fcurves:
        m = pattern.match(fc.data_path)
        if m and m.group(1) in names:
            out.append(fc)
    return out


# ------------------------------------------------------------------------------ shape keys

def check_shape_keys_writable(obj) -> None:
    """Refuse before changing anything, so a refusal never leaves half a result behind."""
    key = obj.data.shape_keys
    if key is None:
        return
    if not key.use_relative:
        raise wb.WritebackError(f"the shape keys of '{obj.name}' are Absolute (Relative is off), "
                                "so per-frame keys cannot blend. Fix: tick Relative in the Shape "
                                "Keys panel or use the point-cache mode.")
    if key.animation_data is not None and key.animation_data.use_tweak_mode:
        raise wb.WritebackError(f"the shape keys of '{obj.name}' are in NLA tweak mode. Fix: "
                                "leave tweak mode in the NLA editor (Tab) and animate again.")


def add_shape_key_animation(obj, frames: np.ndarray, timeline: wb.Timeline, prefix: str,
                            interpolation: str) -> dict:
    """Add one relative key per frame plus their keyframes, without touching any record;
    returns what was created (key names, whether Basis / the action were created)."""
    check_shape_keys_writable(obj)
    mesh = obj.data
    created_basis = mesh.shape_keys is None
    if created_basis:
        obj.shape_key_add(name="Basis", from_mix=False)
    key = mesh.shape_keys
    active_index = obj.active_shape_key_index if not created_basis else 0
    t = frames.shape[0]
    names = []
    for i, name in enumerate(wb.shape_key_names(prefix, t)):
        block = obj.shape_key_add(name=name, from_mix=False)
        bw.points(block).foreach_set("co", frames[i].reshape(-1))
        block.value = 0.0
        block.relative_key = key.reference_key
        names.append(block.name)  # Blender renames on a clash; the data path needs the real one

    fcurves, action, created_action = _fcurve_collection(key, create=True,
                                                         action_name=f"{prefix}_{obj.name}")
    for name, keys in zip(names, wb.shape_key_keyframes(t, timeline)):
        fc = fcurves.new(_data_path(name), index=0)
        actions.set_keys(fc, keys[:, 0], keys[:, 1], interpolation)
    obj.active_shape_key_index = active_index
    mesh.update_tag()
    obj.update_tag(refresh={"DATA"})
    return {"shape_keys": names, "created_basis": created_basis,
            "action": action.name if created_action else ""}


def remove_shape_key_animation(obj, record: dict, *, match_prefix: bool = True) -> bool:
    """Undo `add_shape_key_animation`: `record` is what it returned (plus "prefix"). With
    match_prefix, keys named like ours (prefix_000...) go too, which catches keys left behind by
    a stale record; the exporter's temporary keys pass False to touch only what it added."""
    mesh = obj.data
    key = mesh.shape_keys
    if key is None:
        return False
    prefix = record.get("prefix", DEFAULT_PREFIX)
    names = set(record.get("shape_keys", []))
    if match_prefix:
        names |= {kb.name for kb in key.key_blocks if wb.is_our_key_name(kb.name, prefix)}
    names.discard(key.reference_key.name)
    removed = False

    fcurves, action, _ = _fcurve_collection(key, create=False)
    if fcurves is not None:
        for fc in _key_fcurves(fcurves, names):
            fcurves.remove(fc)
            removed = True
    if action is not None and action.name == record.get("action") and actions.action_is_empty(action):
        key.animation_data.action = None
        if action.users == 0:
            bpy.data.actions.remove(action)

    for name in names:
        block = key.key_blocks.get(name)
        if block is not None:
            obj.shape_key_remove(block)
            removed = True

    key = mesh.shape_keys
    if record.get("created_basis") and key is not None and len(key.key_blocks) == 1:
        obj.shape_key_clear()
    mesh.update_tag()
    obj.update_tag(refresh={"DATA"})
    return removed


def write_shape_keys(obj, frames, frame_start: float = 1.0, frame_step: float = 1.0, *,
                     name_prefix: str = DEFAULT_PREFIX, interpolation: str = "LINEAR",
                     anchor_rest: bool = False) -> bw.WritebackInfo:
    """Write `frames` (T, N, 3, object space, the object's vertex order) as T relative shape
    keys keyed so the mesh plays frame i at `frame_start + i * frame_step`.

    Replaces a previous AnimateAnyMesh result on `obj`, whichever target wrote it. anchor_rest=True shifts the
    trajectories so frame 0 is exactly the current rest shape (see writeback.anchor_to_rest).
    """
    bw.check_object(obj)
    if interpolation not in wb.INTERPOLATIONS:
        raise wb.WritebackError(f"interpolation must be one of {wb.INTERPOLATIONS}, got "
                                f"{interpolation!r}.")
    wb.shape_key_names(name_prefix, 1)  # validates the prefix before anything changes
    timeline = wb.Timeline(float(frame_start), float(frame_step))
    f = bw.prepared_frames(obj, frames, anchor_rest)
    check_shape_keys_writable(obj)
    warnings = []
    if obj.data.users > 1:
        warnings.append(f"mesh '{obj.data.name}' is shared by {obj.data.users} users; all of them "
                        "play this animation (shape keys live on the mesh).")
    remove_animation(obj)
    created = add_shape_key_animation(obj, f, timeline, name_prefix, interpolation)
    t = f.shape[0]
    bw.store_record(obj, {
        "mode": ShapeKeys.name, "prefix": name_prefix, "num_frames": t,
        "frame_start": timeline.frame_start, "frame_step": timeline.frame_step,
        "interpolation": interpolation, **created,
    })
    return bw.WritebackInfo(ShapeKeys.name, obj.name, t, timeline.frame_start,
                            timeline.frame_end(t), shape_keys=list(created["shape_keys"]),
                            warnings=warnings)


def read_shape_key_frames(obj, record: dict) -> np.ndarray:
    key = obj.data.shape_keys
    names = list(record.get("shape_keys", []))
    if key is None or any(key.key_blocks.get(name) is None for name in names):
        raise wb.WritebackError(f"the AnimateAnyMesh shape keys of '{obj.name}' were removed or "
                                "renamed. Fix: animate the object again.")
    n = len(obj.data.vertices)
    out = np.empty((len(names), n * 3), dtype=np.float32)
    for i, name in enumerate(names):
        bw.points(key.key_blocks[name]).foreach_get("co", out[i])
    return out.reshape(len(names), n, 3)


@register
class ShapeKeys(Target):
    name = "SHAPE_KEYS"
    cli_name = "shapekeys"
    label = "Shape Keys"
    description = ("One relative shape key per frame, keyed to play in turn (exports to FBX blend "
                   "shapes and glTF morph targets)")
    summary = "shape keys"
    order = 0

    def check(self, obj, settings: WriteSettings) -> None:
        bw.check_object(obj)
        check_shape_keys_writable(obj)

    def write(self, obj, frames, settings: WriteSettings, prepared=None) -> bw.WritebackInfo:
        return write_shape_keys(obj, frames, settings.frame_start, settings.frame_step,
                                interpolation=settings.interpolation,
                                anchor_rest=settings.anchor_rest)

    def remove(self, obj, record: dict) -> bool:
        return remove_shape_key_animation(obj, record)

    def read_frames(self, obj, record: dict) -> np.ndarray:
        return read_shape_key_frames(obj, record)
