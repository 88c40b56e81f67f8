"""Point cache: the frames in a PC2 file, played by a Mesh Cache modifier first in the stack.

Keeps the .blend light. The files travel with the .blend: a saved file keeps its caches in the
folder `<name>_pointcache/` beside it and points at them with relative paths (`//...`), so the
.blend and that folder can move together, to a render farm or another artist. Until a file is
first saved its caches wait in the add-on's user folder; every save copies the caches into the
saved file's own folder (Save As included) and points the modifiers there.

Files are never deleted while undo could bring back a modifier that reads them: a cache the
open file no longer uses is removed when a file is opened (undo history starts empty), from that
file's own folder only, and the waiting files this Blender session wrote are removed when it
closes the file.

FBX and glTF cannot carry a point cache, so for their export the frames become temporary shape
keys (see `export_fallback`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
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
CACHE_FOLDER_SUFFIX = "_pointcache"
_OUR_FILE = re.compile(r"^.+-[0-9a-f]{10}\.pc2$")
# Caches this Blender session wrote into the user folder for a file not saved yet.
_waiting_files: set[Path] = set()


def cache_folder(blend_path) -> Path:
    """The folder that travels with a .blend: `<folder>/<name>_pointcache/`."""
    blend = Path(blend_path)
    return blend.parent / f"{blend.stem}{CACHE_FOLDER_SUFFIX}"


def _blend_relative(path: Path, blend_path: str) -> str:
    """`path` as Blender stores it for a file saved at `blend_path`: `//...` where it can be."""
    try:
        return "//" + Path(os.path.relpath(path, Path(blend_path).parent)).as_posix()
    except ValueError:  # another drive (Windows): only an absolute path can reach it
        return str(path)


def _default_folder() -> Path:
    if bpy.data.filepath:
        return cache_folder(bpy.data.filepath)
    from .. import session

    return session.user_dir("point_caches")


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
    mod.filepath = _blend_relative(path, bpy.data.filepath) if bpy.data.filepath else str(path)
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


def keep_with_blend(obj, record: dict, blend_path: str) -> None:
    """Before `obj` is saved into `blend_path`: its cache goes into that file's own folder (a
    copy: the file it came from may still use the original) and the modifier points there."""
    mod = cache_modifier(obj, record)
    if mod is None or not mod.filepath:
        return
    if mod.filepath.startswith("//") and not bpy.data.filepath:
        return  # made relative to the destination already (the headless CLI does so)
    source = Path(bpy.path.abspath(mod.filepath)).resolve()
    target = cache_folder(blend_path).resolve() / source.name
    if source != target:
        if not source.is_file():
            return  # nothing to carry; the panel shows the missing file on read
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)  # the user's umask, not the source's permissions
    if bpy.data.filepath:
        # Relative to the file as it is now: saving elsewhere remaps relative paths, so this
        # lands as `//<name>_pointcache/...` in the saved file.
        mod.filepath = _blend_relative(target, bpy.data.filepath)
    else:
        mod.filepath = str(target)  # a first save stores new paths relative (Blender's default)
    record["cache_path"] = str(target)
    bw.store_record(obj, record)


def _used_cache_files() -> set[Path]:
    used = set()
    for ob in bpy.data.objects:
        for mod in getattr(ob, "modifiers", ()):
            if mod.type == "MESH_CACHE" and mod.filepath:
                used.add(Path(bpy.path.abspath(mod.filepath)).resolve())
    return used


def sweep_unused(folder: Path) -> list[Path]:
    """Remove the caches in one .blend's own folder that the open file does not use. Only our
    file names (`<object>-<10 hex>.pc2`), so an artist's own files there stay."""
    if not folder.is_dir():
        return []
    in_use = _used_cache_files()
    removed = []
    for path in folder.glob("*.pc2"):
        if _OUR_FILE.match(path.name) and path.resolve() not in in_use:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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

    def write(self, obj, frames, settings: WriteSettings, prepared=None) -> bw.WritebackInfo:
        folder = Path(settings.cache_dir) if settings.cache_dir else _default_folder()
        info = write_point_cache(obj, frames, folder, settings.frame_start, settings.frame_step,
                                 interpolation=settings.interpolation,
                                 anchor_rest=settings.anchor_rest)
        if not bpy.data.filepath and not settings.cache_dir:
            _waiting_files.add(Path(info.cache_path))
        return info

    def remove(self, obj, record: dict) -> bool:
        return _remove_point_cache(obj, record)

    def read_frames(self, obj, record: dict) -> np.ndarray:
        return read_point_cache_frames(obj, record)

    def prepare_save(self, obj, record: dict, blend_path: str) -> None:
        keep_with_blend(obj, record, blend_path)

    def after_load(self, blend_path: str) -> None:
        if blend_path:
            sweep_unused(cache_folder(blend_path))

    def before_unload(self) -> None:
        in_use = _used_cache_files()
        for path in list(_waiting_files):
            if path.resolve() not in in_use:
                path.unlink(missing_ok=True)
            _waiting_files.discard(path)

    def owned_modifiers(self, obj, record: dict) -> list[str]:
        mod = cache_modifier(obj, record)
        return [mod.name] if mod is not None else []

    def export_fallback(self, obj, record: dict, label: str, warnings: list):
        return cache_as_shape_keys(obj, record, label, warnings)
