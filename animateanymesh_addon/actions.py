"""F-curves on an ID's action, whichever action API this Blender has.

Blender 4.4 introduced slotted actions (layers -> strips -> channelbags per slot); 5.0 removed
the legacy `action.fcurves`. 4.2 / 4.3 still use the legacy API.
"""

from __future__ import annotations

import bpy
import numpy as np

SLOTTED_ACTIONS = bpy.app.version >= (4, 4, 0)


def fcurve_collection(owner, create: bool, action_name: str, id_type: str):
    """The F-curve collection that animates `owner` (an ID whose type is `id_type`, e.g. "KEY"
    or "OBJECT"), or None (create=False, none yet).

    Reuses the action (and slot) the artist may already have on it, so their own animation
    stays; otherwise creates one. Returns (fcurves, action, created_action).
    """
    anim = owner.animation_data
    if anim is None:
        if not create:
            return None, None, False
        anim = owner.animation_data_create()
    action = anim.action
    created = False
    if action is None:
        if not create:
            return None, None, False
        action = bpy.data.actions.new(action_name)
        if not SLOTTED_ACTIONS:
            action.id_root = id_type
        anim.action = action
        created = True
    if not SLOTTED_ACTIONS:
        return action.fcurves, action, created

    slot = anim.action_slot
    if slot is None:
        if not create:
            return None, action, False
        slot = action.slots.new(id_type=id_type, name=owner.name)
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


def action_is_empty(action) -> bool:
    if not SLOTTED_ACTIONS:
        return len(action.fcurves) == 0
    return all(len(bag.fcurves) == 0
               for layer in action.layers for strip in layer.strips if strip.type == "KEYFRAME"
               for bag in strip.channelbags)


def interpolation_value(name: str) -> int:
    """A keyframe interpolation's enum value, for keyframe_points.foreach_set."""
    return bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[name].value


def set_keys(fcurve, times, values, interpolation: str) -> None:
    """Add one key per (time, value), each property in one call (fast for long clips), with
    flat handles and constant extrapolation: the first and last poses hold."""
    keys = np.stack([np.asarray(times, dtype=np.float32),
                     np.asarray(values, dtype=np.float32)], axis=1).reshape(-1)
    points = fcurve.keyframe_points
    points.add(len(times))
    points.foreach_set("co", keys)
    points.foreach_set("handle_left", keys)
    points.foreach_set("handle_right", keys)
    points.foreach_set("interpolation", np.full(len(times), interpolation_value(interpolation),
                                                dtype=np.int32))
    fcurve.extrapolation = "CONSTANT"
    fcurve.update()
