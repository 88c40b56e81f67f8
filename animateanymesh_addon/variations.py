"""Variations: the K takes of one Animate side by side, each on a temporary copy, and the choice.

An Animate with Variations K gets K takes back from one job (seeds seed, seed + 1, ...). Each take
plays on a copy of the objects (object and mesh data copied) in the collection "Variations"
under the scene's collection, moved along X by 1.25 times the width of what was animated per
take, so the takes stand side by side and all play on the timeline. The originals stay as they
were. Each copy records in custom properties the original's name, the take number (1-based),
its seed and the set it belongs to (the copies made together by one request: the parts of one
character animated as one share a set, and keeping a take keeps it for all of them).

Keep This One reads the chosen copy's frames back through its write-back target (so it works
after a save and reload too), writes them on the original with the same timing and target, and
removes every copy of those originals with their mesh data and whatever the target made; the
collection goes when it is empty. The operators call these functions inside their own undo step.

Plain functions, no operators and no bpy.ops (as blender_writeback): everything they change is
ID data that undo restores. Files a target keeps (point caches) are never deleted here: undo may
bring a copy back, and the target sweeps unused files when the file is opened again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import bpy
from mathutils import Matrix

from . import blender_writeback as bw
from . import targets
from . import writeback as wb

COLLECTION = "Variations"
OF_PROP = "aam_variation_of"     # the original object's name
TAKE_PROP = "aam_take"           # 1..K
SEED_PROP = "aam_seed"           # the seed that made this take
SET_PROP = "aam_variation_set"   # the copies made by one request (one take of each part)
SPACING = 1.25                   # copies stand this many widths apart


def is_copy(obj) -> bool:
    return obj is not None and obj.get(OF_PROP) is not None and obj.get(SET_PROP) is not None


def copies_of(names) -> list:
    """Every variation copy whose original is one of `names`."""
    names = set(names)
    return [o for o in bpy.data.objects if is_copy(o) and o.get(OF_PROP) in names]


def all_copies() -> list:
    return [o for o in bpy.data.objects if is_copy(o)]


def set_members(obj) -> list:
    """The copies made by the same request as `obj` (every take of every part)."""
    set_id = obj.get(SET_PROP)
    return [o for o in bpy.data.objects if is_copy(o) and o.get(SET_PROP) == set_id]


def describe(obj) -> str:
    return (f"take {int(obj.get(TAKE_PROP, 0))} (seed {int(obj.get(SEED_PROP, 0))}) of "
            f"'{obj.get(OF_PROP)}'")


def _collection(scene):
    coll = bpy.data.collections.get(COLLECTION)
    if coll is None or coll.library is not None:
        coll = bpy.data.collections.new(COLLECTION)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def _spacing(width: float, diagonal: float) -> float:
    """How far apart the takes stand: 1.25 widths along X (a mesh flat in X: its size)."""
    for size in (width, diagonal):
        if size > 1e-6:
            return SPACING * size
    return SPACING


def _make_copy(original, take: int, seed: int, set_id: str, offset: float, collection):
    copy = original.copy()
    copy.data = original.data.copy()
    copy.name = f"{original.name} take {take}"
    key = copy.data.shape_keys
    if key is not None and key.animation_data is not None and key.animation_data.action is not None:
        # the copied Key shares the original's action: give the copy its own, so removing our
        # keys from the copy never touches the original's animation
        slot = getattr(key.animation_data, "action_slot", None)
        slot_id = slot.identifier if slot is not None else None
        key.animation_data.action = key.animation_data.action.copy()
        if slot_id is not None and key.animation_data.action_slot is None:
            match = key.animation_data.action.slots.get(slot_id)
            if match is not None:
                key.animation_data.action_slot = match
    for prop in (OF_PROP, TAKE_PROP, SEED_PROP, SET_PROP):
        if prop in copy:
            del copy[prop]
    copy[OF_PROP], copy[TAKE_PROP], copy[SEED_PROP], copy[SET_PROP] = (
        original.name, int(take), int(seed), set_id)
    collection.objects.link(copy)
    copy.matrix_world = Matrix.Translation((offset, 0.0, 0.0)) @ original.matrix_world
    return copy


def remove_copy(copy) -> None:
    """A copy, what its target made on it, its mesh data and its own action."""
    try:
        targets.remove_animation(copy)
    except wb.WritebackError:
        pass  # written by a target this version lacks: the data goes with the copy anyway
    mesh = copy.data
    key = mesh.shape_keys if mesh is not None else None
    action = key.animation_data.action if key is not None and key.animation_data else None
    bpy.data.objects.remove(copy)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)
    if action is not None and action.users == 0:
        bpy.data.actions.remove(action)


def _tidy_collection() -> None:
    coll = bpy.data.collections.get(COLLECTION)
    if coll is not None and coll.library is None and not coll.objects and not coll.children:
        bpy.data.collections.remove(coll)


def discard(names) -> int:
    """Remove every copy of the originals `names`; returns how many went."""
    copies = copies_of(names)
    for copy in copies:
        remove_copy(copy)
    _tidy_collection()
    return len(copies)


def write_takes(groups, widths, diagonals, takes, seeds, mode: str,
                settings: targets.WriteSettings) -> list:
    """groups: per request, its objects as (name, matrix); takes[k]: {object name: frames in the
    object's space}; seeds[k] made take k. Earlier copies of these originals go first, then take
    k of each group plays on copies moved (k + 1) x 1.25 widths along X. Everything is checked
    before anything changes. Returns (copy, WritebackInfo, seed) per copy."""
    target = targets.get_target(mode)
    target.check_settings(settings)
    originals = []
    for group in groups:
        for name, _ in group:
            obj = bpy.data.objects.get(name)
            if obj is None:
                raise wb.WritebackError(f"'{name}' was deleted or renamed while it was being "
                                        "animated: animate it again.")
            target.check(obj, settings)
            for take in takes:
                wb.as_frames(take[name], len(obj.data.vertices))
            originals.append(name)
    discard(originals)
    collection = _collection(bpy.context.scene)
    written = []
    for group, width, diagonal in zip(groups, widths, diagonals):
        set_id = uuid.uuid4().hex[:12]
        step = _spacing(width, diagonal)
        for number, (take, seed) in enumerate(zip(takes, seeds), start=1):
            for name, _ in group:
                copy = _make_copy(bpy.data.objects[name], number, seed, set_id, number * step,
                                  collection)
                info = targets.write_animation(copy, take[name], mode, settings)
                written.append((copy, info, seed))
    return written


def keep(copy) -> list:
    """Apply the take of `copy` to its original (and to the originals of the parts animated with
    it), then remove every copy of those originals. Returns the WritebackInfo of each original."""
    if not is_copy(copy):
        raise wb.WritebackError(f"'{getattr(copy, 'name', copy)}' is not a variation copy. Fix: "
                                "select one of the copies in the 'Variations' collection.")
    take = copy.get(TAKE_PROP)
    chosen = [o for o in set_members(copy) if o.get(TAKE_PROP) == take]
    plans = []
    for member in chosen:
        original = bpy.data.objects.get(member[OF_PROP])
        if original is None:
            raise wb.WritebackError(f"the original '{member[OF_PROP]}' of {member.name} is gone "
                                    "(deleted or renamed). Fix: rename it back, or use Discard "
                                    "Variations.")
        target, record = targets.target_of(member)
        if target is None:
            raise wb.WritebackError(f"the variation '{member.name}' carries no animation any more. "
                                    "Fix: pick another take, or animate again.")
        frames = targets.animation_frames(member)
        cache = record.get("cache_path", "")
        settings = targets.WriteSettings(
            float(record["frame_start"]), float(record["frame_step"]), anchor_rest=False,
            interpolation=record.get("interpolation", "LINEAR"),
            cache_dir=str(Path(cache).parent) if target.keeps_files and cache else "")
        target.check_settings(settings)
        target.check(original, settings)
        wb.as_frames(frames, len(original.data.vertices))
        extras = {k: record[k] for k in ("loop", "period", "seed", "warnings") if k in record}
        plans.append((original, frames, target, settings, extras))
    infos = []
    for original, frames, target, settings, extras in plans:
        info = target.write(original, frames, settings)
        info.period = int(extras.get("period", 0) or 0)
        bw.note_record(original, **extras)
        infos.append(info)
    discard([original.name for original, *_ in plans])
    return infos
