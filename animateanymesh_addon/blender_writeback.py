"""What every write-back target shares: object checks, rest coordinates, and the record.

Plain functions, no operators and no bpy.ops, so the Animate operator can call the targets
(`targets/`) inside its own undo step: everything they change is ID data that undo restores.

What belongs to us is written down on the object, in the custom property "animateanymesh"
(mode = the target's name, and what that target made: key names, modifier, file, timing).
Re-animating reads it and removes our previous result first, so results replace each other
instead of stacking; the artist's own shape keys, actions, modifiers and transforms are never
touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import writeback as wb

RECORD_PROP = "animateanymesh"


@dataclass
class WritebackInfo:
    """What a write produced; operators report `warnings` and may frame the timeline on it."""

    mode: str          # the target's name
    object_name: str
    num_frames: int
    frame_start: float
    frame_end: float
    shape_keys: list[str] = field(default_factory=list)
    cache_path: str = ""
    warnings: list[str] = field(default_factory=list)
    period: int = 0    # a loop: frames of one period (num_frames is one more, the first again)


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


def rest_coordinates(obj) -> np.ndarray:
    """The object's rest positions (N, 3) float32 in its own vertex order: the reference
    (Basis) shape key when there is one, since that is what shape keys deform."""
    mesh = obj.data
    n = len(mesh.vertices)
    out = np.empty(n * 3, dtype=np.float32)
    key = mesh.shape_keys
    if key is not None and key.reference_key is not None:
        points(key.reference_key).foreach_get("co", out)
    else:
        mesh.vertices.foreach_get("co", out)
    return out.reshape(n, 3)


def polygons(obj) -> tuple[np.ndarray, np.ndarray]:
    """(corner vertex indices, corners per polygon) of the object's mesh, flat int64."""
    mesh = obj.data
    sizes = np.empty(len(mesh.polygons), dtype=np.int64)
    mesh.polygons.foreach_get("loop_total", sizes)
    flat = np.empty(int(sizes.sum()), dtype=np.int64)
    mesh.polygons.foreach_get("vertices", flat)
    return flat, sizes


def points(key_block):
    # ShapeKey.points (mesh-only, fast path) exists from 4.1; `data` is the generic collection.
    return key_block.points if hasattr(key_block, "points") else key_block.data


def prepared_frames(obj, frames, anchor_rest: bool) -> np.ndarray:
    """The frames checked against the object, and anchored to its rest shape when asked."""
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


def store_record(obj, record: dict) -> None:
    obj[RECORD_PROP] = record


def clear_record(obj) -> None:
    if RECORD_PROP in obj:
        del obj[RECORD_PROP]


def note_record(obj, **values) -> None:
    """Add what the run knows beyond the target's own record (a loop's period, the seed)."""
    record = animation_info(obj)
    if record is None:
        return
    record.update({k: v for k, v in values.items() if v is not None})
    store_record(obj, record)


def note_warnings(obj, warnings: list[str]) -> None:
    """Keep what the backend warned about with the animation it concerns, so the panel can show
    it for as long as the object carries that animation (an operator report flashes by once).
    One string, a warning a line: ID properties hold no lists of strings."""
    record = animation_info(obj)
    if record is None:
        return
    record["warnings"] = "\n".join(" ".join(w.split()) for w in dict.fromkeys(warnings))
    store_record(obj, record)


# ------------------------------------------------------------------------------ timeline

def animation_timeline(obj) -> wb.Timeline | None:
    record = animation_info(obj)
    if record is None:
        return None
    return wb.Timeline(float(record["frame_start"]), float(record["frame_step"]))
