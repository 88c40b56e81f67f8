"""Write-back targets: the ways an animation can live on a Blender mesh object.

One module per target in this folder, each defining a `Target` subclass decorated with
`@register`. Every module here is imported when the package is, so a new target is one new file
(plus its test): the panel's Write menu, the operators, the controller, the exporters and the
headless CLI all list what is registered here and spell no target's name themselves.

A target knows how to
    check_settings  refuse settings it cannot play, before any job runs
    check           refuse an object it could not write, before anything in the scene changes
    write           put the frames on the object and record what it made (the object's record)
    remove          take back what `write` made, from the record
    read_frames     give the frames back (for exporters, previews, re-timing)
    export_companions  other objects an export must take along (the armature of a skin)
    export_fallback make the animation visible to an exporter that cannot carry this target
                    (for the duration of the export), and say which modifiers are its own
    solve_job       (optional, with solves = True) heavy work for `write`, run outside Blender's
                    interface first: a job that callers start and poll (state, fraction, text,
                    cancel) and whose `result` they hand to write(..., prepared=job.result)
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from dataclasses import dataclass

import bpy
import numpy as np

from .. import blender_writeback as bw
from .. import skinning
from .. import writeback as wb


@dataclass(frozen=True)
class WriteSettings:
    """How frames are written, whatever the target."""

    frame_start: float = 1.0
    frame_step: float = 1.0
    anchor_rest: bool = False
    interpolation: str = "LINEAR"
    cache_dir: str = ""      # for targets that keep files; "" = the add-on's user folder
    bones: int = skinning.DEFAULT_BONES   # for targets that bake a skeleton

    @property
    def timeline(self) -> wb.Timeline:
        return wb.Timeline(float(self.frame_start), float(self.frame_step))


class Target:
    name = ""           # stored in the panel's setting and in the object's record
    cli_name = ""       # the headless CLI's --mode value
    label = ""          # the panel's menu entry
    description = ""    # its tooltip
    summary = ""        # "<object>: 16 frames as <summary>"
    order = 100         # position in menus
    keeps_files = False  # writes files beside the scene (WriteSettings.cache_dir)
    solves = False       # offers solve_job: heavy work that runs before write

    def check_settings(self, settings: WriteSettings) -> None:
        settings.timeline  # noqa: B018 - validates start and step

    def check(self, obj, settings: WriteSettings) -> None:
        bw.check_object(obj)

    def write(self, obj, frames, settings: WriteSettings, prepared=None) -> bw.WritebackInfo:
        raise NotImplementedError

    def solve_job(self, obj, frames, settings: WriteSettings):
        """A job to run (poll) before write, or None when writing needs no heavy work."""
        return None

    def remove(self, obj, record: dict) -> bool:
        raise NotImplementedError

    def read_frames(self, obj, record: dict) -> np.ndarray:
        raise NotImplementedError

    def prepare_save(self, obj, record: dict, blend_path: str) -> None:
        """Before the open file is saved to `blend_path`: make what `obj` needs travel with it."""

    def after_load(self, blend_path: str) -> None:
        """A file was opened (undo history is empty): tidy what only older states needed."""

    def before_unload(self) -> None:
        """The open file is being closed: tidy what only this session's states needed."""

    def owned_modifiers(self, obj, record: dict) -> list[str]:
        """Modifiers this target added (exporters do not count them as the artist's)."""
        return []

    def export_companions(self, obj, record: dict) -> list:
        """Other objects the animation needs in an export (a skeleton)."""
        return []

    def export_fallback(self, obj, record: dict, label: str, warnings: list):
        """A context in which exporters that only carry shape keys (FBX, glTF) see the animation."""
        return contextlib.nullcontext()


TARGETS: dict[str, Target] = {}


def register(cls: type[Target]) -> type[Target]:
    if not cls.name or cls.name in TARGETS:
        raise ValueError(f"write-back target {cls.__name__} needs a unique name (got {cls.name!r})")
    TARGETS[cls.name] = cls()
    return cls


def all_targets() -> list[Target]:
    return sorted(TARGETS.values(), key=lambda t: (t.order, t.name))


def get_target(name: str) -> Target:
    target = TARGETS.get(name)
    if target is None:
        known = ", ".join(t.name for t in all_targets())
        raise wb.WritebackError(f"unknown write mode {name!r}; use one of {known}.")
    return target


def enum_items() -> list[tuple[str, str, str]]:
    """The targets as Blender EnumProperty items."""
    return [(t.name, t.label, t.description) for t in all_targets()]


def target_of(obj) -> tuple[Target, dict] | tuple[None, None]:
    """The target that wrote the animation `obj` carries, and its record."""
    record = bw.animation_info(obj)
    if record is None:
        return None, None
    return get_target(record.get("mode", "")), record


# ----------------------------------------------------------------------------- whatever the target

def write_animation(obj, frames, target_name: str, settings: WriteSettings,
                    prepared=None) -> bw.WritebackInfo:
    """Check, then replace any earlier result of ours on `obj` with `frames` written as `target_name`."""
    target = get_target(target_name)
    target.check_settings(settings)
    target.check(obj, settings)
    return write_prepared(target, obj, frames, settings, prepared)


def write_prepared(target: Target, obj, frames, settings: WriteSettings,
                   prepared=None) -> bw.WritebackInfo:
    """target.write, handing over what its solve_job made when there is something."""
    if prepared is None:   # targets that need no solve keep the three-argument write
        return target.write(obj, frames, settings)
    return target.write(obj, frames, settings, prepared)


def remove_animation(obj) -> bool:
    """Remove our result from `obj`, whichever target wrote it, and its record. True when
    anything was removed."""
    bw.check_object(obj)
    target, record = target_of(obj)
    if target is None:
        return False
    removed = target.remove(obj, record)
    bw.clear_record(obj)
    return removed


def animation_frames(obj) -> np.ndarray:
    """Our frames back from the object, (T, N, 3) float32, whichever target holds them."""
    target, record = target_of(obj)
    if target is None:
        raise wb.WritebackError(f"'{obj.name}' carries no AnimateAnyMesh animation. Fix: animate "
                                "it first.")
    return wb.as_frames(target.read_frames(obj, record), len(obj.data.vertices))


def before_save(blend_path: str) -> None:
    for obj in bpy.data.objects:
        if obj.type != "MESH":
            continue
        try:
            target, record = target_of(obj)
        except wb.WritebackError:
            continue  # written by a target this version lacks: saved as it is
        if target is not None:
            target.prepare_save(obj, record, blend_path)


def after_load(blend_path: str) -> None:
    for target in all_targets():
        target.after_load(blend_path)


def before_unload() -> None:
    for target in all_targets():
        target.before_unload()


def _import_target_modules() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_target_modules()
