"""Bake to Armature: any animated mesh becomes a skinned skeleton (targets/armature.py).

The frames come from our own result when the object carries one (its frames and timing), and
otherwise from Blender: the evaluated mesh at every frame of the scene's range, whatever drives
it (shape keys, modifiers, a cache). Then a BakeRun, polled like an Animate, solves each object
in a child process and writes nothing until every solve succeeded.

Our own animation is replaced on the object by default (Keep Vertex Animation puts the rig on a
copy instead); an animation that is not ours is never touched: the rig goes on a copy, and the
original keeps playing as it did.
"""

from __future__ import annotations

import threading

import bpy
import numpy as np

from . import blender_writeback as bw
from . import skinning, targets
from . import writeback as wb
from .controller import AnimateRun
from .seam import ErrorCode
from .targets import armature

COPY_SUFFIX = " Baked"
STILL_TOLERANCE = 1e-6   # share of the diagonal: less motion than this is no animation


class BakeError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def evaluated_frames(obj, frame_start: int, frame_end: int) -> np.ndarray:
    """(T, N, 3) object-space vertex positions of the evaluated mesh at every frame."""
    scene = bpy.context.scene
    current = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for frame in range(int(frame_start), int(frame_end) + 1):
            scene.frame_set(frame)
            ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
            mesh = ev.to_mesh()
            try:
                if len(mesh.vertices) != len(obj.data.vertices):
                    raise BakeError(ErrorCode.BAD_INPUT, (
                        f"'{obj.name}' has {len(mesh.vertices)} vertices at frame {frame} but "
                        f"{len(obj.data.vertices)} in its mesh: a modifier changes its topology. "
                        "Fix: turn off modifiers that add or remove geometry (Subdivision, "
                        "Mirror, ...) in the viewport, or apply them, and bake again."))
                co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
                mesh.vertices.foreach_get("co", co)
            finally:
                ev.to_mesh_clear()
            out.append(co.reshape(-1, 3))
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return np.array(out)


def source_animation(obj) -> tuple[np.ndarray, wb.Timeline, str, bool]:
    """(frames, timeline, interpolation, ours) of whatever animates `obj`."""
    bw.check_object(obj)
    record = bw.animation_info(obj)
    if record is not None:
        try:
            frames = targets.animation_frames(obj)
        except wb.WritebackError as exc:
            raise BakeError(ErrorCode.WRITEBACK, str(exc)) from None
        return (frames, bw.animation_timeline(obj), record.get("interpolation", "LINEAR"), True)
    scene = bpy.context.scene
    if scene.frame_end <= scene.frame_start:
        raise BakeError(ErrorCode.BAD_INPUT, f"the scene's frame range {scene.frame_start}-"
                        f"{scene.frame_end} holds fewer than 2 frames. Fix: set the range that "
                        f"'{obj.name}' moves in.")
    frames = evaluated_frames(obj, scene.frame_start, scene.frame_end)
    rest = bw.rest_coordinates(obj)
    diag = float(np.linalg.norm(np.ptp(rest, axis=0))) or 1.0
    if float(np.abs(frames - frames[0]).max()) <= STILL_TOLERANCE * diag:
        raise BakeError(ErrorCode.BAD_INPUT, f"'{obj.name}' does not move in frames "
                        f"{scene.frame_start}-{scene.frame_end}: there is no animation to bake. "
                        "Fix: animate it first (Animate, or any Blender animation).")
    return frames, wb.Timeline(float(scene.frame_start), 1.0), "LINEAR", False


def make_copy(obj):
    """A copy of `obj` that plays nothing of its own: same mesh shape (shape keys and
    modifiers dropped), same place, same collections."""
    mesh = obj.data.copy()
    copy = obj.copy()
    copy.data = mesh
    copy.name = f"{obj.name}{COPY_SUFFIX}"
    copy.animation_data_clear()
    copy.modifiers.clear()
    copy.vertex_groups.clear()
    bw.clear_record(copy)
    if mesh.shape_keys is not None:
        rest = bw.rest_coordinates(obj)
        copy.shape_key_clear()
        mesh.vertices.foreach_set("co", rest.reshape(-1))
    for coll in obj.users_collection or [bpy.context.scene.collection]:
        coll.objects.link(copy)
    return copy


class BakeRun:
    """Bake each object of `objects`: frames gathered now, solves polled, written by apply()."""

    kind = "bake"

    def __init__(self, objects, bones: int = skinning.DEFAULT_BONES,
                 keep_vertex_animation: bool = False):
        if not objects:
            raise BakeError(ErrorCode.BAD_INPUT, "no mesh is selected. Fix: select the animated "
                            "mesh objects to bake.")
        self.bones = int(bones)
        self.keep = bool(keep_vertex_animation)
        self.items = []     # (object name, frames, timeline, interpolation, ours, job)
        for obj in objects:
            try:
                armature.check_bakeable(obj, self.bones)
                frames, timeline, interpolation, ours = source_animation(obj)
                job = armature.solve_job(obj, frames, self.bones)
            except wb.WritebackError as exc:
                raise BakeError(ErrorCode.BAD_INPUT, str(exc)) from None
            self.items.append((obj.name, frames, timeline, interpolation, ours, job))
        self.state = "pending"
        self.error: tuple[str, str] | None = None
        self._cancel = threading.Event()

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def fraction(self) -> float:
        return sum(item[-1].fraction for item in self.items) / len(self.items)

    @property
    def text(self) -> str:
        if self.state == "error":
            return f"Failed: {self.error[1]}"
        current = next((item[-1] for item in self.items if not item[-1].finished), None)
        return current.text if current is not None else self.state.capitalize()

    def start(self) -> "BakeRun":
        self.state = "running"
        self.items[0][-1].start()
        return self

    def request_cancel(self) -> None:
        self._cancel.set()

    def poll(self) -> bool:
        if self.finished:
            return True
        current = next((item[-1] for item in self.items if not item[-1].finished), None)
        if current is None:
            self.state = "done"
            return True
        if self._cancel.is_set():
            self.abandon()
            return True
        if current.state == "pending":
            current.start()
        if not current.poll():
            return False
        if current.state == "error":
            self.state = "error"
            self.error = (ErrorCode.WRITEBACK, current.error)
            return True
        return self.poll() if current.state == "done" else False

    run_blocking = AnimateRun.run_blocking

    def abandon(self) -> None:
        for item in self.items:
            item[-1].cancel()
        if not self.finished:
            self.state = "cancelled"

    def apply(self) -> list:
        """Write every rig (the operator's last step, inside its undo step)."""
        if self.state != "done":
            raise BakeError(ErrorCode.NO_RESULT, f"nothing to write: the bake is {self.state}.")
        ready = []
        for name, frames, timeline, interpolation, ours, job in self.items:
            obj = bpy.data.objects.get(name)
            if obj is None:
                raise BakeError(ErrorCode.OBJECT_GONE, f"'{name}' was deleted or renamed while it "
                                "was being baked: bake it again.")
            ready.append((obj, frames, timeline, interpolation, ours, job.result))
        infos = []
        for obj, frames, timeline, interpolation, ours, skin in ready:
            record = bw.animation_info(obj) or {}
            onto = obj if ours and not self.keep else make_copy(obj)
            settings = targets.WriteSettings(timeline.frame_start, timeline.frame_step,
                                             interpolation=interpolation, bones=self.bones)
            try:
                infos.append(armature.write_rig(onto, frames, settings, skin))
            except wb.WritebackError as exc:
                raise BakeError(ErrorCode.WRITEBACK, str(exc)) from None
            bw.note_record(onto, loop=record.get("loop"), period=record.get("period"),
                           seed=record.get("seed"))
        return infos
