"""Put an animation onto a Blender mesh object: per-frame shape keys, or a PC2 point cache.

Plain functions, no operators and no bpy.ops, so the Animate operator can call them inside its
own undo step (everything they change is ID data that undo restores; only the PC2 file lives on
disk, which is why every write gets a fresh file name, see `write_point_cache`).

What belongs to us is written down on the object, in the custom property "animateanymesh"
(mode, key names, modifier, file, timing). Re-animating reads it and removes our previous result
first, so results replace each other instead of stacking; the artist's own shape keys, actions,
modifiers and transforms are never touched.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import writeback as wb

RECORD_PROP = "animateanymesh"
MODE_SHAPE_KEYS = "SHAPE_KEYS"
MODE_POINT_CACHE = "POINT_CACHE"
CACHE_MODIFIER_NAME = "AnimateAnyMesh Cache"
DEFAULT_PREFIX = "AAM"

# Blender 4.4 introduced slotted actions (layers -> strips -> channelbags per slot); 5.0 removed
# the legacy `action.fcurves`. 4.2 / 4.3 still use the legacy API.
SLOTTED_ACTIONS = bpy.app.version >= (4, 4, 0)

_MESH_CACHE_INTERPOLATION = {"LINEAR": "LINEAR", "CONSTANT": "NONE"}


@dataclass
class WritebackInfo:
    """What a write produced; operators report `warnings` and may frame the timeline on it."""

    mode: str
    object_name: str
    num_frames: int
    frame_start: float
    frame_end: float
    shape_keys: list[str] = field(default_factory=list)
    cache_path: str = ""
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ checks

def check_object(obj) -> None:
    if obj is None or getattr(obj, "type", None) != "MESH":
        kind = getattr(obj, "type", type(obj).__name__)
        raise wb.WritebackError(f"only mesh objects can be animated, got {kind}. Fix: select a "
                                "mesh object.")
    if obj.library is not None or obj.data.library is not None:
        raise wb.WritebackError(f"'{obj.name}' is linked from another file and cannot be changed. "
                                "Fix: make it local (Object > Relations > Make Local) first.")
    if obj.mode == "EDIT" or obj.data.is_editmode:
        raise wb.WritebackError(f"'{obj.name}' is in Edit Mode, which would overwrite the result "
                                "when you leave it. Fix: switch to Object Mode and animate again.")


def _timeline(frame_start, frame_step) -> wb.Timeline:
    return wb.Timeline(float(frame_start), float(frame_step))


def rest_coordinates(obj) -> np.ndarray:
    """The object's rest positions (N, 3) float32 in its own vertex order: the reference
    (Basis) shape key when there is one, since that is what shape keys deform."""
    mesh = obj.data
    n = len(mesh.vertices)
    out = np.empty(n * 3, dtype=np.float32)
    key = mesh.shape_keys
    if key is not None and key.reference_key is not None:
        _points(key.reference_key).foreach_get("co", out)
    else:
        mesh.vertices.foreach_get("co", out)
    return out.reshape(n, 3)


def _points(key_block):
    # ShapeKey.points (mesh-only, fast path) exists from 4.1; `data` is the generic collection.
    return key_block.points if hasattr(key_block, "points") else key_block.data


def _prepared_frames(obj, frames, anchor_rest: bool) -> np.ndarray:
    n = len(obj.data.vertices)
    f = wb.as_frames(frames, n)
    return wb.anchor_to_rest(f, rest_coordinates(obj)) if anchor_rest else f


# ------------------------------------------------------------------------------ record

def animation_info(obj) -> dict | None:
    """Our record on `obj` as a plain dict, or None when it carries no AnimateAnyMesh result."""
    rec = obj.get(RECORD_PROP) if obj is not None else None
    if rec is None:
        return None
    return rec.to_dict() if hasattr(rec, "to_dict") else dict(rec)


def _store_record(obj, record: dict) -> None:
    obj[RECORD_PROP] = record


def note_warnings(obj, warnings: list[str]) -> None:
    """Keep what the backend warned about with the animation it concerns, so the panel can show
    it for as long as the object carries that animation (an operator report flashes by once).
    One string, a warning a line: ID properties hold no lists of strings."""
    record = animation_info(obj)
    if record is None:
        return
    record["warnings"] = "\n".join(" ".join(w.split()) for w in dict.fromkeys(warnings))
    _store_record(obj, record)


# ------------------------------------------------------------------------------ actions

def _data_path(key_name: str) -> str:
    return f'key_blocks["{key_name}"].value'


def _fcurve_collection(key, create: bool, action_name: str = ""):
    """The F-curve collection that animates the Key datablock, or None (create=False, none yet).

    Reuses the action (and slot) the artist may already have on the Key, so their own shape-key
    animation stays; otherwise creates one. Returns (fcurves, action, created_action).
    """
    anim = key.animation_data
    if anim is None:
        if not create:
            return None, None, False
        anim = key.animation_data_create()
    action = anim.action
    created = False
    if action is None:
        if not create:
            return None, None, False
        action = bpy.data.actions.new(action_name or f"{DEFAULT_PREFIX}_{key.user.name}")
        if not SLOTTED_ACTIONS:
            action.id_root = "KEY"
        anim.action = action
        created = True
    if not SLOTTED_ACTIONS:
        return action.fcurves, action, created

    slot = anim.action_slot
    if slot is None:
        if not create:
            return None, action, False
        slot = action.slots.new(id_type="KEY", name=key.name)
        anim.action_slot = slot
    channelbag = _channelbag(action, slot, create)
    if channelbag is None:
        return None, action, created
    return channelbag.fcurves, action, created


def _channelbag(action, slot, create: bool):
    for layer in action.layers:
        for strip in layer.strips:
            if strip.type == "KEYFRAME":
                bag = strip.channelbag(slot)
                if bag is not None:
                    return bag
    if not create:
        return None
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


def _action_is_empty(action) -> bool:
    if not SLOTTED_ACTIONS:
        return len(action.fcurves) == 0
    return all(len(bag.fcurves) == 0
               for layer in action.layers for strip in layer.strips if strip.type == "KEYFRAME"
               for bag in strip.channelbags)


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
        _points(block).foreach_set("co", frames[i].reshape(-1))
        block.value = 0.0
        block.relative_key = key.reference_key
        names.append(block.name)  # Blender renames on a clash; the data path needs the real one

    fcurves, action, created_action = _fcurve_collection(key, create=True,
                                                         action_name=f"{prefix}_{obj.name}")
    interp_value = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[interpolation].value
    for name, keys in zip(names, wb.shape_key_keyframes(t, timeline)):
        fc = fcurves.new(_data_path(name), index=0)
        points = fc.keyframe_points
        points.add(keys.shape[0])
        flat = keys.reshape(-1)
        points.foreach_set("co", flat)
        points.foreach_set("handle_left", flat)
        points.foreach_set("handle_right", flat)
        points.foreach_set("interpolation", np.full(keys.shape[0], interp_value, dtype=np.int32))
        fc.extrapolation = "CONSTANT"
        fc.update()
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
    if action is not None and action.name == record.get("action") and _action_is_empty(action):
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
                     anchor_rest: bool = False) -> WritebackInfo:
    """Write `frames` (T, N, 3, object space, the object's vertex order) as T relative shape
    keys keyed so the mesh plays frame i at `frame_start + i * frame_step`.

    Replaces a previous AnimateAnyMesh result on `obj` (either mode). anchor_rest=True shifts the
    trajectories so frame 0 is exactly the current rest shape (see writeback.anchor_to_rest).
    """
    check_object(obj)
    if interpolation not in wb.INTERPOLATIONS:
        raise wb.WritebackError(f"interpolation must be one of {wb.INTERPOLATIONS}, got "
                                f"{interpolation!r}.")
    wb.shape_key_names(name_prefix, 1)  # validates the prefix before anything changes
    timeline = _timeline(frame_start, frame_step)
    f = _prepared_frames(obj, frames, anchor_rest)
    check_shape_keys_writable(obj)
    warnings = []
    if obj.data.users > 1:
        warnings.append(f"mesh '{obj.data.name}' is shared by {obj.data.users} users; all of them "
                        "play this animation (shape keys live on the mesh).")
    remove_animation(obj)
    created = add_shape_key_animation(obj, f, timeline, name_prefix, interpolation)
    t = f.shape[0]
    _store_record(obj, {
        "mode": MODE_SHAPE_KEYS, "prefix": name_prefix, "num_frames": t,
        "frame_start": timeline.frame_start, "frame_step": timeline.frame_step,
        "interpolation": interpolation, **created,
    })
    return WritebackInfo(MODE_SHAPE_KEYS, obj.name, t, timeline.frame_start,
                         timeline.frame_end(t), shape_keys=list(created["shape_keys"]),
                         warnings=warnings)


# ------------------------------------------------------------------------------ point cache

def _safe_file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "object"
    return stem[:60]


def write_point_cache(obj, frames, folder, frame_start: float = 1.0, frame_step: float = 1.0, *,
                      interpolation: str = "LINEAR", anchor_rest: bool = False) -> WritebackInfo:
    """Write `frames` to a new PC2 file in `folder` and play it with a Mesh Cache modifier placed
    first in the stack (so the artist's modifiers work on the animated mesh).

    Each call writes a new file name: undo may bring back an earlier modifier, which must still
    find its own file. `delete_unused_point_caches(folder)` removes files nothing points at.
    """
    check_object(obj)
    if interpolation not in wb.INTERPOLATIONS:
        raise wb.WritebackError(f"interpolation must be one of {wb.INTERPOLATIONS}, got "
                                f"{interpolation!r}.")
    timeline = _timeline(frame_start, frame_step)
    if timeline.frame_step < 0.01:
        raise wb.WritebackError(f"frame_step {timeline.frame_step} is below 0.01, the fastest "
                                "the Mesh Cache modifier plays. Fix: use a larger frame step.")
    f = _prepared_frames(obj, frames, anchor_rest)
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise wb.WritebackError(f"cannot create the point-cache folder {folder}: {exc}. Fix: pick "
                                "a writable folder.") from None
    path = folder / f"{_safe_file_stem(obj.name)}-{uuid.uuid4().hex[:10]}.pc2"
    wb.write_pc2(path, f, start_frame=timeline.frame_start, sample_rate=timeline.frame_step)

    warnings = []
    remove_animation(obj)
    if obj.data.shape_keys is not None:
        warnings.append(f"'{obj.name}' has shape keys; the point cache overwrites their effect "
                        "while it plays.")
    mod = obj.modifiers.new(CACHE_MODIFIER_NAME, "MESH_CACHE")
    mod.cache_format = "PC2"
    mod.filepath = str(path)
    mod.play_mode = "SCENE"
    mod.time_mode = "FRAME"
    mod.deform_mode = "OVERWRITE"
    mod.interpolation = _MESH_CACHE_INTERPOLATION[interpolation]
    mod.forward_axis, mod.up_axis = "POS_Y", "POS_Z"   # the file is in object space already
    mod.flip_axis = (False, False, False)
    mod.factor = 1.0
    for attr, value in wb.mesh_cache_settings(timeline).items():
        setattr(mod, attr, value)
    index = list(obj.modifiers).index(mod)
    if index:
        obj.modifiers.move(index, 0)
    obj.update_tag(refresh={"DATA"})
    t = f.shape[0]
    _store_record(obj, {
        "mode": MODE_POINT_CACHE, "modifier": mod.name, "cache_path": str(path),
        "num_frames": t, "frame_start": timeline.frame_start, "frame_step": timeline.frame_step,
        "interpolation": interpolation,
    })
    return WritebackInfo(MODE_POINT_CACHE, obj.name, t, timeline.frame_start,
                         timeline.frame_end(t), cache_path=str(path), warnings=warnings)


def cache_modifier(obj, record: dict | None = None):
    """The Mesh Cache modifier our record points at (None when gone)."""
    record = animation_info(obj) if record is None else record
    if record is None or record.get("mode") != MODE_POINT_CACHE:
        return None
    mod = obj.modifiers.get(record.get("modifier", CACHE_MODIFIER_NAME))
    if mod is not None and mod.type == "MESH_CACHE":
        return mod
    return None


def _remove_point_cache(obj, record: dict) -> bool:
    mod = cache_modifier(obj, record)
    if mod is None:
        return False
    obj.modifiers.remove(mod)
    obj.update_tag(refresh={"DATA"})
    return True


def delete_unused_point_caches(folder) -> list[Path]:
    """Delete the .pc2 files in `folder` that no Mesh Cache modifier of the open file uses
    (results replaced by re-animating). Call it when undo can no longer need them, e.g. after
    saving. Returns the deleted paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    used = set()
    for ob in bpy.data.objects:
        for mod in getattr(ob, "modifiers", ()):
            if mod.type == "MESH_CACHE" and mod.filepath:
                used.add(Path(bpy.path.abspath(mod.filepath)).resolve())
    deleted = []
    for path in folder.glob("*.pc2"):
        if path.resolve() not in used:
            path.unlink()
            deleted.append(path)
    return deleted


# ------------------------------------------------------------------------------ removal / read

def remove_animation(obj) -> bool:
    """Remove our result from `obj` (keys, keyframes, our action if empty, Basis if we added it,
    or the Mesh Cache modifier) and its record. Returns True when anything was removed."""
    check_object(obj)
    record = animation_info(obj)
    if record is None:
        return False
    if record.get("mode") == MODE_POINT_CACHE:
        removed = _remove_point_cache(obj, record)
    else:
        removed = remove_shape_key_animation(obj, record)
    del obj[RECORD_PROP]
    return removed


def animation_frames(obj) -> np.ndarray:
    """Our frames back from the object, (T, N, 3) float32: from the shape keys or the PC2 file."""
    record = animation_info(obj)
    if record is None:
        raise wb.WritebackError(f"'{obj.name}' carries no AnimateAnyMesh animation. Fix: animate "
                                "it first.")
    n = len(obj.data.vertices)
    if record.get("mode") == MODE_POINT_CACHE:
        mod = cache_modifier(obj, record)
        path = bpy.path.abspath(mod.filepath) if mod is not None else record.get("cache_path", "")
        if not path or not Path(path).is_file():
            raise wb.WritebackError(f"the point cache of '{obj.name}' is missing ({path}). Fix: "
                                    "animate the object again.")
        frames, _ = wb.read_pc2(path)
        return wb.as_frames(frames, n)
    key = obj.data.shape_keys
    names = list(record.get("shape_keys", []))
    if key is None or any(key.key_blocks.get(name) is None for name in names):
        raise wb.WritebackError(f"the AnimateAnyMesh shape keys of '{obj.name}' were removed or "
                                "renamed. Fix: animate the object again.")
    out = np.empty((len(names), n * 3), dtype=np.float32)
    for i, name in enumerate(names):
        _points(key.key_blocks[name]).foreach_get("co", out[i])
    return out.reshape(len(names), n, 3)


def animation_timeline(obj) -> wb.Timeline | None:
    record = animation_info(obj)
    if record is None:
        return None
    return wb.Timeline(float(record["frame_start"]), float(record["frame_step"]))


__all__ = [
    "CACHE_MODIFIER_NAME", "MODE_POINT_CACHE", "MODE_SHAPE_KEYS", "RECORD_PROP", "WritebackInfo",
    "add_shape_key_animation", "animation_frames", "animation_info", "animation_timeline",
    "cache_modifier", "delete_unused_point_caches", "remove_animation",
    "remove_shape_key_animation", "rest_coordinates", "write_point_cache", "write_shape_keys",
]
