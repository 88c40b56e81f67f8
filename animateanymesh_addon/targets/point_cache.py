"""Point cache: the frames in a PC2 file, played by a Mesh Cache modifier first in the stack.

Keeps the .blend light (the frames live on disk, next to the output or in the add-on's user
folder). FBX and glTF cannot carry a point cache, so for their export the frames become
temporary shape keys (see `export_fallback`).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

import bpy
import numpy as np

from .. import blender_writeback as bw
from .. import writeback as wb
from . import Target, WriteSettings, register, remove_animation, shape_keys

CACHE_MODIFIER_NAME = "AnimateAnyMesh Cache"
MIN_FRAME_STEP = 0.01  # the fastest the Mesh Cache modifier plays
_MESH_CACHE_INTERPOLATION = {"LINEAR": "LINEAR", "CONSTANT": "NONE"}
_TEMP_PREFIX = "AAM"


def _safe_file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "object"
    return stem[:60]


def write_point_cache(obj, frames, folder, frame_start: float = 1.0, frame_step: float = 1.0, *,
                      interpolation: str = "LINEAR", anchor_rest: bool = False) -> bw.WritebackInfo:
    """Write `frames` to a new PC2 file in `folder` and play it with a Mesh Cache modifier placed
    first in the stack (so the artist's modifiers work on the animated mesh).

    Each call writes a new file name: undo may bring back an earlier modifier, which must still
    find its own file, so files are never overwritten or deleted by a later write.
    """
    bw.check_object(obj)
    if interpolation not in wb.INTERPOLATIONS:
        raise wb.WritebackError(f"interpolation must be one of {wb.INTERPOLATIONS}, got "
                                f"{interpolation!r}.")
    timeline = wb.Timeline(float(frame_start), float(frame_step))
    _check_step(timeline.frame_step)
    f = bw.prepared_frames(obj, frames, anchor_rest)
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
    bw.store_record(obj, {
        "mode": PointCache.name, "modifier": mod.name, "cache_path": str(path),
        "num_frames": t, "frame_start": timeline.frame_start, "frame_step": timeline.frame_step,
        "interpolation": interpolation,
    })
    return bw.WritebackInfo(PointCache.name, obj.name, t, timeline.frame_start,
                            timeline.frame_end(t), cache_path=str(path), warnings=warnings)


def cache_modifier(obj, record: dict | None = None):
    """The Mesh Cache modifier our record points at (None when gone)."""
    record = bw.animation_info(obj) if record is None else record
    if record is None or record.get("mode") != PointCache.name:
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


def _check_step(frame_step: float) -> None:
    if frame_step < MIN_FRAME_STEP:
        raise wb.WritebackError(f"frame_step {frame_step} is below {MIN_FRAME_STEP}, the fastest "
                                "the Mesh Cache modifier plays. Fix: use a larger frame step.")


def read_point_cache_frames(obj, record: dict) -> np.ndarray:
    mod = cache_modifier(obj, record)
    path = bpy.path.abspath(mod.filepath) if mod is not None else record.get("cache_path", "")
    if not path or not Path(path).is_file():
        raise wb.WritebackError(f"the point cache of '{obj.name}' is missing ({path}). Fix: "
                                "animate the object again.")
    frames, _ = wb.read_pc2(path)
    return frames


@contextlib.contextmanager
def cache_as_shape_keys(obj, record: dict, label: str, warnings: list):
    """For the time of an FBX / glTF export: the cache's frames as temporary shape keys, the
    Mesh Cache modifier muted; everything is put back afterwards."""
    key = obj.data.shape_keys
    own = [kb.name for kb in key.key_blocks[1:]] if key is not None else []
    if own:
        warnings.append(
            f"{label}: '{obj.name}' plays a point cache, which in Blender overrides its shape keys "
            f"({', '.join(own)}); in the file the animation becomes blend shapes and those keys "
            "add to it. Fix: mute or remove them if unwanted, or export Alembic.")
    frames = wb.as_frames(read_point_cache_frames(obj, record), len(obj.data.vertices))
    mod = cache_modifier(obj, record)
    flags = (mod.show_viewport, mod.show_render) if mod is not None else None
    if mod is not None:
        mod.show_viewport = mod.show_render = False
    timeline = wb.Timeline(float(record["frame_start"]), float(record["frame_step"]))
    created = shape_keys.add_shape_key_animation(obj, frames, timeline, _TEMP_PREFIX,
                                                 record.get("interpolation", "LINEAR"))
    try:
        yield
    finally:
        shape_keys.remove_shape_key_animation(obj, {**created, "prefix": _TEMP_PREFIX},
                                              match_prefix=False)
        if mod is not None:
            mod.show_viewport, mod.show_render = flags


@register
class PointCache(Target):
    name = "POINT_CACHE"
    cli_name = "pointcache"
    label = "Point Cache"
    description = ("A PC2 file in the add-on's user folder played by a Mesh Cache modifier (light "
                   ".blend files; exported as shape keys when baking)")
    summary = "point cache"
    order = 10
    keeps_files = True

    def check_settings(self, settings: WriteSettings) -> None:
        _check_step(settings.timeline.frame_step)

    def write(self, obj, frames, settings: WriteSettings) -> bw.WritebackInfo:
        folder = settings.cache_dir
        if not folder:
            from .. import session

            folder = str(session.user_dir("point_caches"))
        return write_point_cache(obj, frames, folder, settings.frame_start, settings.frame_step,
                                 interpolation=settings.interpolation,
                                 anchor_rest=settings.anchor_rest)

    def remove(self, obj, record: dict) -> bool:
        return _remove_point_cache(obj, record)

    def read_frames(self, obj, record: dict) -> np.ndarray:
        return read_point_cache_frames(obj, record)

    def make_paths_relative(self, obj, record: dict, blend_folder) -> None:
        mod = cache_modifier(obj, record)
        if mod is not None and mod.filepath and not mod.filepath.startswith("//"):
            rel = Path(mod.filepath).resolve().relative_to(Path(blend_folder).resolve())
            mod.filepath = "//" + rel.as_posix()

    def owned_modifiers(self, obj, record: dict) -> list[str]:
        mod = cache_modifier(obj, record)
        return [mod.name] if mod is not None else []

    def export_fallback(self, obj, record: dict, label: str, warnings: list):
        return cache_as_shape_keys(obj, record, label, warnings)
