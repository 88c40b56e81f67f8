"""Operators of the panel: Animate, Cancel, New Seed, Release Memory, Remove Animation, the chain
of prompts (Add / Remove), the variations (Keep This One, Discard Variations), and the batch
queue (Animate Collection, Cancel All, Retry Failed, Clear).

Animate and Animate Collection run the same controller two ways:
* invoke (the panel's buttons): a modal operator polled by a 0.1 s timer; Blender never waits,
  the panel and the status bar show progress, Esc or Cancel stops the job;
* execute (scripts, the headless CLI, Repeat Last): the same polling in a loop, blocking, with
  progress on the console (or the cursor's counter in the UI).
The result is written in the operator's last step, so one Animate is one undo step, and a
cancelled or failed one leaves the scene as it was. Redo (Adjust Last Operation) changes only
how the result is written (timing, mode): it re-writes the frames it kept without the backend.
"""

import random
import sys

import bpy

from . import armature_bake
from . import batch as batchq
from . import blender_writeback as bw
from . import session, targets, variations
from .backend_setup import SetupError
from .controller import (AnimateError, AnimateOptions, AnimateRun, BatchRun, clip_range,
                         frame_scene_range, item_options)
from .props import (KEEP_SHAPE_DESCRIPTION, KEEP_SHAPE_ITEMS, LOOP_ITEMS, MAX_SEED, QUALITY_DESCRIPTION,
                    QUALITY_ITEMS, SOLVER_DESCRIPTION, STEPS_DESCRIPTION, VARIATIONS_DESCRIPTION,
                    keep_shape_identifier, keep_shape_mode, loop_identifier, loop_method,
                    quality_identifier, quality_preset, solver_search)
from .seam import ErrorCode, limits
from .writeback import WritebackError, frame_step_for_fps, frames_for_seconds

DEVICE_VALUES = {"AUTO": "auto", "CPU": "cpu", "CUDA": "cuda"}
DEVICE_ITEMS = [("AUTO", "Auto", "The GPU when there is one, else the CPU"),
                ("CPU", "CPU", "The CPU"), ("CUDA", "CUDA GPU", "An NVIDIA GPU")]
TIMER_S = 0.1


# ----------------------------------------------------------------------------- shared helpers

def scene_settings(context):
    return context.scene.animateanymesh


def options_from_settings(context) -> tuple[AnimateOptions, str]:
    """The panel's settings (and the preferences they defer to) as AnimateOptions, plus the
    device enum. Raises SetupError when the model choice is incomplete."""
    s = scene_settings(context)
    prefs = session.backend_settings()
    if s.model == "PREFERENCES":
        model = session.model_option(prefs.model, prefs.model_dir)
    else:
        model = session.model_option(s.model, s.model_dir)
    device = prefs.device if s.device == "PREFERENCES" else s.device
    scene = context.scene
    if s.timing == "RATE":
        step = frame_step_for_fps(scene.render.fps / scene.render.fps_base, s.frame_rate)
    else:
        step = s.frame_step
    if s.length == "FRAMES":
        frames = s.length_frames
    elif s.length == "SECONDS":
        frames = frames_for_seconds(s.length_seconds, scene.render.fps / scene.render.fps_base, step)
    else:
        frames = None
    options = AnimateOptions(
        prompt=s.prompt, model=model, seed=s.seed, guidance=s.guidance or None,
        steps=s.steps or None, solver=s.solver.strip() or None, quality=quality_preset(s.quality),
        num_traj=s.num_traj or None, frames=frames, strength=s.strength,
        chain=tuple(item.prompt for item in s.chain),
        repeat=s.repeat, loop=loop_method(s.loop), mask_group=s.mask_group.strip(),
        mask_falloff=s.mask_falloff or None, variations=s.variations,
        keep_shape=keep_shape_mode(s.keep_shape), set_scene_range=s.set_scene_range,
        device=DEVICE_VALUES.get(device, "auto"),
        frame_start=float(s.frame_start), frame_step=float(step), mode=s.mode,
        keep_rest=s.keep_rest, together=s.together, bones=s.bones)
    return options, device


def redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES", "PROPERTIES"}:
                area.tag_redraw()


def show_status(context, source) -> None:
    """Progress of `source` (anything with .text and .fraction) in the status bar."""
    workspace = getattr(context, "workspace", None)
    if workspace is None:
        return

    def draw(header, _context):
        layout = header.layout
        if hasattr(layout, "progress"):  # Blender 4.0+
            layout.progress(factor=source.fraction, type="BAR", text=source.text)
        else:
            layout.label(text=f"{source.text} ({source.fraction * 100:.0f}%)")
        layout.label(text="Esc to cancel", icon="EVENT_ESC")

    try:
        workspace.status_text_set(draw)
    except (AttributeError, TypeError):  # a Blender without callable status texts
        workspace.status_text_set(source.text)


def clear_status(context) -> None:
    for window in context.window_manager.windows:
        try:
            window.workspace.status_text_set(None)
        except AttributeError:
            pass


class ConsoleProgress:
    """Headless progress on stderr: one line per stage, sampling every tenth of its steps."""

    def __init__(self):
        self.last = None

    def __call__(self, run):
        job = getattr(run, "job", None)
        if run.state == "running" and job is not None and hasattr(job, "progress"):
            stage, step, total = job.progress
            key = (job.id, stage, step * 10 // total if stage == "sample" and total else 0)
        else:   # a skinning solve: its text, every tenth of the way
            key = (run.text.split(":")[0], int(run.fraction * 10))
        if key != self.last:
            self.last = key
            print(f"[animateanymesh] {run.text}", file=sys.stderr, flush=True)


class _RunOperator:
    """invoke -> modal polling; execute -> blocking polling; both end in `finish_run`."""

    _run = None
    _timer = None

    def make_run(self, context):  # -> AnimateRun | BatchRun, or raise AnimateError/SetupError
        raise NotImplementedError

    def finish_run(self, context, run) -> set:
        raise NotImplementedError

    def _finish(self, context, run) -> set:
        session.remember_solvers()  # the backend answered: keep its list for the panel
        return self.finish_run(context, run)

    def cancelled(self, what: str) -> set:
        message = f"{what} cancelled: the scene is unchanged."
        session.set_outcome(ErrorCode.CANCELLED, message)
        self.report({"WARNING"}, message)
        return {"CANCELLED"}

    def refuse(self, code: str, message: str) -> set:
        session.set_outcome(code, message)
        self.report({"ERROR"}, message)
        return {"CANCELLED"}

    def _prepare(self, context):
        busy = session.busy_message()
        if busy:
            return None, self.refuse(ErrorCode.BUSY, busy)
        try:
            return self.make_run(context), None
        except AnimateError as exc:
            return None, self.refuse(exc.code, exc.message)
        except (SetupError, WritebackError) as exc:
            return None, self.refuse(ErrorCode.BAD_INPUT, str(exc))

    def execute(self, context):
        run, refused = self._prepare(context)
        if refused:
            return refused
        if not run.finished:
            session.set_active_run(run)
            run.start()
            wm = context.window_manager
            ui = not bpy.app.background
            if ui:
                wm.progress_begin(0, 100)
            console = ConsoleProgress()

            def progress(r):
                if ui:
                    wm.progress_update(int(r.fraction * 100))
                else:
                    console(r)

            try:
                run.run_blocking(progress)
            finally:
                if ui:
                    wm.progress_end()
        return self._finish(context, run)

    def invoke(self, context, event):
        run, refused = self._prepare(context)
        if refused:
            return refused
        if run.finished:  # e.g. a batch with nothing queued
            return self._finish(context, run)
        session.set_active_run(run)
        run.start()
        if run.finished:  # the backend could not even be started
            return self._finish(context, run)
        self._run = run
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        show_status(context, run)
        redraw(context)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        if event.type == "ESC" and event.value == "PRESS":
            run.request_cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        run.poll()
        redraw(context)
        if not run.finished:
            return {"PASS_THROUGH"}
        self._end_modal(context)
        return self._finish(context, run)

    def cancel(self, context):
        """Blender ends the modal operator itself (another file is loaded, the window closes)."""
        if self._run is not None:
            self._run.abandon()  # no more polls will come: never leave it "running"
        self._end_modal(context)

    def _end_modal(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        clear_status(context)
        redraw(context)


# ----------------------------------------------------------------------------- Animate

def _skip(**kwargs):
    # SKIP_SAVE: a property the caller did not set comes from the panel, not from the last call
    return {"options": {"SKIP_SAVE"}, **kwargs}


class ANIMATEANYMESH_OT_animate(_RunOperator, bpy.types.Operator):
    """Animate the selected meshes from the prompt (Esc cancels). Settings not given come from the panel"""

    bl_idname = "animateanymesh.animate"
    bl_label = "Animate"
    bl_options = {"REGISTER", "UNDO"}

    prompt: bpy.props.StringProperty(name="Prompt", **_skip())
    model: bpy.props.StringProperty(name="Model", description="default, official or a model folder",
                                    **_skip())
    seed: bpy.props.IntProperty(name="Seed", min=0, max=MAX_SEED, **_skip())
    guidance: bpy.props.FloatProperty(name="Guidance", min=0.0, description="0: the model's default",
                                      **_skip())
    quality: bpy.props.EnumProperty(name="Quality", items=QUALITY_ITEMS,
                                    description=QUALITY_DESCRIPTION, **_skip())
    steps: bpy.props.IntProperty(name="Steps", min=0, description=STEPS_DESCRIPTION, **_skip())
    solver: bpy.props.StringProperty(name="Solver", search=solver_search,
                                     description=SOLVER_DESCRIPTION, **_skip())
    frames: bpy.props.IntProperty(name="Frames", min=0, max=limits.MAX_FRAMES,
                                  description="Retime the clip to this many frames; 0: the model's",
                                  **_skip())
    set_scene_range: bpy.props.BoolProperty(name="Set Scene Range", **_skip())
    strength: bpy.props.FloatProperty(name="Strength", min=limits.MIN_STRENGTH,
                                      max=limits.MAX_STRENGTH, default=1.0, **_skip())
    # No hard limits on these: a value out of range is refused with the reason, never clamped
    then: bpy.props.StringProperty(name="Then", description="Prompts that follow the prompt, one "
                                   "per line; each segment starts from the last pose of the one "
                                   "before (default: the panel's list)", **_skip())
    repeat: bpy.props.IntProperty(name="Repeat", default=1, soft_min=1, soft_max=limits.MAX_SEGMENTS,
                                  description="Play the prompt and its chain this many times",
                                  **_skip())
    loop: bpy.props.EnumProperty(name="Loop", items=LOOP_ITEMS, **_skip())
    keep_shape: bpy.props.EnumProperty(name="Keep Shape", items=KEEP_SHAPE_ITEMS,
                                       description=KEEP_SHAPE_DESCRIPTION, **_skip())
    mask_group: bpy.props.StringProperty(name="Mask", description="A vertex group of each object: "
                                         "only it moves, by its weights (empty: the whole mesh)",
                                         **_skip())
    mask_falloff: bpy.props.FloatProperty(name="Falloff", soft_min=0.0, soft_max=limits.MAX_FALLOFF,
                                          description="The mask's soft edge, a share of the mesh's "
                                          "size", **_skip())
    variations: bpy.props.IntProperty(name="Variations", default=1, soft_min=1,
                                      soft_max=limits.MAX_VARIATIONS,
                                      description=VARIATIONS_DESCRIPTION, **_skip())
    num_traj: bpy.props.IntProperty(name="Tokens", min=0, description="0: from the vertex count",
                                    **_skip())
    device: bpy.props.EnumProperty(name="Device", items=DEVICE_ITEMS, **_skip())
    frame_start: bpy.props.FloatProperty(name="Start", description="Scene frame of the first model "
                                         "frame", **_skip())
    frame_step: bpy.props.FloatProperty(name="Step", min=0.001, default=1.0,
                                        description="Scene frames per model frame", **_skip())
    mode: bpy.props.EnumProperty(name="Write", items=targets.enum_items(), **_skip())
    keep_rest: bpy.props.BoolProperty(name="Start From Rest Pose", **_skip())
    together: bpy.props.BoolProperty(name="Selected as One", **_skip())
    objects: bpy.props.StringProperty(
        name="Objects", description="Names of the meshes, one per line (default: the selected ones)",
        options={"SKIP_SAVE", "HIDDEN"})
    cache_dir: bpy.props.StringProperty(
        name="Point Cache Folder", subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"},
        description="Where point caches go (default: the add-on's user folder)")

    _OPTION_NAMES = ("prompt", "model", "seed", "guidance", "steps", "solver", "num_traj", "frames",
                     "strength", "repeat", "mask_group", "mask_falloff", "variations",
                     "set_scene_range", "frame_start", "frame_step", "mode", "keep_rest", "together")

    @classmethod
    def poll(cls, context):
        if session.busy_message():
            cls.poll_message_set(session.busy_message())
            return False
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to animate")
            return False
        return True

    def _objects(self, context) -> list:
        if self.objects.strip():
            names = [n for n in self.objects.replace(",", "\n").splitlines() if n.strip()]
            missing = [n for n in names if bpy.data.objects.get(n.strip()) is None]
            if missing:
                raise AnimateError(ErrorCode.BAD_INPUT, f"no object named {', '.join(map(repr, missing))} in "
                                   "this file; check the names (they are case-sensitive).")
            return [bpy.data.objects[n.strip()] for n in names]
        selected = list(context.selected_objects)
        meshes = [o for o in selected if o.type == "MESH"]
        if not meshes:
            extra = " (the selection has no meshes)" if selected else ""
            raise AnimateError(ErrorCode.NO_OBJECTS, f"nothing to animate{extra}: select one or more mesh "
                               "objects.")
        return meshes

    def _options(self, context) -> AnimateOptions:
        """Panel settings for what the caller left unset; the result is stored back into the
        operator so redo and Repeat Last see the same values."""
        defaults, device = options_from_settings(context)
        props = self.properties
        for name in self._OPTION_NAMES:
            if not props.is_property_set(name):
                value = getattr(defaults, name)
                if value is None:  # 0 / "": the model's default
                    value = "" if name == "solver" else 0
                setattr(self, name, value)
        if not props.is_property_set("device"):
            self.device = device if device in DEVICE_VALUES else "AUTO"
        if not props.is_property_set("then"):
            self.then = "\n".join(defaults.chain)
        if not props.is_property_set("loop"):
            self.loop = loop_identifier(defaults.loop)
        if not props.is_property_set("keep_shape"):
            self.keep_shape = keep_shape_identifier(defaults.keep_shape)
        if not props.is_property_set("quality"):
            self.quality = quality_identifier(defaults.quality)
        then = self.then.strip("\n")
        return AnimateOptions(
            prompt=self.prompt, model=self.model or "default", seed=self.seed,
            guidance=self.guidance or None, steps=self.steps or None,
            solver=self.solver.strip() or None, quality=quality_preset(self.quality),
            num_traj=self.num_traj or None, frames=self.frames or None, strength=self.strength,
            chain=tuple(then.split("\n")) if then else (), repeat=self.repeat,
            loop=loop_method(self.loop), mask_group=self.mask_group.strip(),
            mask_falloff=self.mask_falloff or None, variations=self.variations,
            keep_shape=keep_shape_mode(self.keep_shape), set_scene_range=self.set_scene_range,
            device=DEVICE_VALUES[self.device], frame_start=self.frame_start,
            frame_step=self.frame_step, mode=self.mode, keep_rest=self.keep_rest,
            together=self.together, cache_dir=bpy.path.abspath(self.cache_dir) if self.cache_dir else "")

    def make_run(self, context):
        options = self._options(context)
        run = AnimateRun(self._objects(context), options)
        cached = session.cached_result(run.signature) if self._may_reuse() else None
        if cached is not None:
            takes, seeds, run.warnings = cached
            run.takes, run.seeds, run.warnings = [dict(t) for t in takes], list(seeds), list(run.warnings)
            run.seed = run.seeds[0]
            run.state = "done"
        return run

    def _may_reuse(self) -> bool:
        # Only execute reuses (redo, Repeat Last, scripts): the Animate button always asks the
        # backend, so a re-imported model or an edited mesh is never hidden by a kept result.
        return not getattr(self, "_invoked", False)

    def invoke(self, context, event):
        self._invoked = True
        return super().invoke(context, event)

    def finish_run(self, context, run):
        self._invoked = False  # a redo on this same operator re-writes the kept frames
        if run.state == "cancelled":
            return self.cancelled("Animate")
        if run.state == "error":
            code, message = run.error
            return self.refuse(code, _with_hint(code, message))
        try:
            infos = run.apply()
        except AnimateError as exc:
            return self.refuse(exc.code, exc.message)
        if run.options.set_scene_range:
            frame_scene_range(context.scene, infos)
        session.remember_result(run.signature, (run.takes, run.seeds, run.warnings))
        self.seed = run.seed if run.seed is not None else self.seed
        for text in run.warnings + [w for info in infos for w in info.warnings]:
            self.report({"WARNING"}, text)
        for info in infos:
            bw.note_warnings(bpy.data.objects.get(info.object_name), run.warnings + info.warnings)
        first = infos[0]
        if first.period:
            start, end = clip_range(first)
            clip = f"a {first.period}-frame loop on {start}-{end}"
        else:
            clip = f"{first.num_frames} frames on {first.frame_start:g}-{first.frame_end:g}"
        if run.options.variations > 1:
            message = (f"Made {len(run.seeds)} variations of {', '.join(dict.fromkeys(run.names))} in "
                       f"'{variations.COLLECTION}' (seeds {', '.join(map(str, run.seeds))}), each "
                       f"{clip}: select the best one and press Keep This One.")
        else:
            names = ", ".join(info.object_name for info in infos)
            message = f"Animated {names}: {clip} (seed {run.seed})."
        session.set_outcome("", message)
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def draw(self, context):
        # Redo changes only how the kept result is written; the rest needs another Animate.
        layout = self.layout
        layout.use_property_split = True
        for name in ("frame_start", "frame_step", "mode", "keep_rest", "set_scene_range"):
            layout.prop(self, name)
        box = layout.box()
        box.label(text=f"Prompt: {self.prompt}")
        for line in self.then.strip("\n").split("\n") if self.then.strip() else ():
            box.label(text=f"Then: {line}")
        box.label(text=f"Seed {self.seed}; change prompt or seed in the panel and Animate again")


def _with_hint(code: str, message: str) -> str:
    if code == ErrorCode.BACKEND_DIED:
        return message + " (restarting it on the next Animate)" if "restart" not in message else message
    if code == ErrorCode.OUT_OF_MEMORY and "Tokens" not in message:
        return message + " Lower Tokens, or set Device to CPU."
    return message


class ANIMATEANYMESH_OT_cancel(bpy.types.Operator):
    """Stop the running Animate, batch or backend setup"""

    bl_idname = "animateanymesh.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        return session.active_run() is not None or session.active_task() is not None

    def execute(self, context):
        run, task = session.active_run(), session.active_task()
        if run is not None:
            run.request_cancel()
        if task is not None:
            task.cancel()
        return {"FINISHED"}


class ANIMATEANYMESH_OT_new_seed(bpy.types.Operator):
    """Pick a new random seed (another motion for the same prompt)"""

    bl_idname = "animateanymesh.new_seed"
    bl_label = "New Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene_settings(context).seed = random.randint(0, MAX_SEED)
        return {"FINISHED"}


class ANIMATEANYMESH_OT_release_memory(bpy.types.Operator):
    """Stop the backend process and free all the memory its model holds (the next Animate
    starts it again and reloads the model)"""

    bl_idname = "animateanymesh.release_memory"
    bl_label = "Release Memory"

    @classmethod
    def poll(cls, context):
        if session.active_run() is not None:
            cls.poll_message_set("Cancel the running Animate first")
            return False
        return True

    def execute(self, context):
        if session.shutdown_backend():
            self.report({"INFO"}, "Backend stopped; its memory is free.")
        else:
            self.report({"INFO"}, "The backend was not running.")
        redraw(context)
        return {"FINISHED"}


class ANIMATEANYMESH_OT_chain_add(bpy.types.Operator):
    """Add a prompt that follows: a segment that starts where the one before ends"""

    bl_idname = "animateanymesh.chain_add"
    bl_label = "Add Chained Prompt"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    prompt: bpy.props.StringProperty(name="Prompt", options={"SKIP_SAVE"})

    def execute(self, context):
        s = scene_settings(context)
        if len(s.chain) + 1 >= limits.MAX_SEGMENTS:
            self.report({"ERROR"}, f"a chain holds at most {limits.MAX_SEGMENTS} prompts, the first "
                        "included; set Length to stretch the segments instead.")
            return {"CANCELLED"}
        s.chain.add().prompt = self.prompt
        s.chain_index = len(s.chain) - 1
        return {"FINISHED"}


class ANIMATEANYMESH_OT_chain_remove(bpy.types.Operator):
    """Remove the selected prompt from the chain"""

    bl_idname = "animateanymesh.chain_remove"
    bl_label = "Remove Chained Prompt"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return len(scene_settings(context).chain) > 0

    def execute(self, context):
        s = scene_settings(context)
        index = min(max(s.chain_index, 0), len(s.chain) - 1)
        s.chain.remove(index)
        s.chain_index = max(0, min(index, len(s.chain) - 1))
        return {"FINISHED"}


def _variation(context, name: str):
    """The copy named `name`, else the active object (a copy or not)."""
    if name:
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise WritebackError(f"no object named '{name}' in this file.")
        return obj
    return context.active_object


def _idle_in_object_mode(cls, context) -> bool:
    """No Animate is running (else the reason shows on the greyed button) and Blender is in
    Object Mode: what every operator that rewrites objects needs."""
    if session.busy_message():
        cls.poll_message_set(session.busy_message())
        return False
    return context.mode == "OBJECT"


class ANIMATEANYMESH_OT_keep_variation(bpy.types.Operator):
    """Apply this variation's take to the original and remove all its variation copies"""

    bl_idname = "animateanymesh.keep_variation"
    bl_label = "Keep This One"
    bl_options = {"REGISTER", "UNDO"}

    variation: bpy.props.StringProperty(
        name="Variation", description="The copy whose take to keep (default: the active object)",
        options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return _idle_in_object_mode(cls, context)

    def execute(self, context):
        try:
            copy = _variation(context, self.variation)
            if not variations.is_copy(copy):
                raise WritebackError(f"'{getattr(copy, 'name', 'nothing')}' is not a variation: "
                                     f"select one of the copies in '{variations.COLLECTION}' (or "
                                     "name it) and Keep This One again.")
            what = variations.describe(copy)
            infos = variations.keep(copy)
        except WritebackError as exc:
            session.set_outcome(ErrorCode.WRITEBACK, str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        originals = [bpy.data.objects.get(info.object_name) for info in infos]
        if originals and originals[0] is not None:
            context.view_layer.update()  # the removed copies leave the view layer
            for obj in context.view_layer.objects:
                if obj is not None:
                    obj.select_set(obj in originals)
            context.view_layer.objects.active = originals[0]
        message = f"Kept {what} on {', '.join(info.object_name for info in infos)}; its copies are removed."
        session.set_outcome("", message)
        self.report({"INFO"}, message)
        return {"FINISHED"}


class ANIMATEANYMESH_OT_discard_variations(bpy.types.Operator):
    """Remove the variation copies of the active object (a copy or its original), or all of them"""

    bl_idname = "animateanymesh.discard_variations"
    bl_label = "Discard Variations"
    bl_options = {"REGISTER", "UNDO"}

    variation: bpy.props.StringProperty(
        name="Object", description="A copy or an original whose variations go (default: the active "
        "object)", options={"SKIP_SAVE"})
    everything: bpy.props.BoolProperty(name="All", description="Every variation in the file",
                                       options={"SKIP_SAVE"})

    def execute(self, context):
        try:
            obj = None if self.everything else _variation(context, self.variation)
        except WritebackError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if obj is None:
            names = {o.get(variations.OF_PROP) for o in variations.all_copies()}
        elif variations.is_copy(obj):
            names = {o.get(variations.OF_PROP) for o in variations.set_members(obj)}
        else:
            names = {obj.name}
        count = variations.discard(names)
        if not count:
            self.report({"INFO"}, "No variation copies to remove.")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Removed {count} variation copies.")
        return {"FINISHED"}


class ANIMATEANYMESH_OT_remove_animation(bpy.types.Operator):
    """Remove the AnimateAnyMesh animation from the selected meshes (your own shape keys,
    actions and modifiers stay)"""

    bl_idname = "animateanymesh.remove_animation"
    bl_label = "Remove Animation"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.mode == "OBJECT" and any(o.type == "MESH" for o in context.selected_objects)

    def execute(self, context):
        removed = []
        for obj in context.selected_objects:
            if obj.type != "MESH":
                continue
            try:
                if targets.remove_animation(obj):
                    removed.append(obj.name)
            except WritebackError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
        if not removed:
            self.report({"INFO"}, "None of the selected meshes carries an AnimateAnyMesh animation.")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Removed the animation of {', '.join(removed)}.")
        return {"FINISHED"}


# ----------------------------------------------------------------------------- armature

class ANIMATEANYMESH_OT_bake_armature(_RunOperator, bpy.types.Operator):
    """Bake the selected animated meshes to armatures with skin weights (one key per frame on
    each bone): for game engines, FBX and glTF. Any animation works: ours, shape keys,
    modifiers, caches"""

    bl_idname = "animateanymesh.bake_armature"
    bl_label = "Bake to Armature"
    bl_options = {"REGISTER", "UNDO"}

    bones: bpy.props.IntProperty(**_skip(name="Bones", default=0, min=0, max=256,
                                         description="Deforming bones (0: the panel's setting)"))
    keep_vertex_animation: bpy.props.EnumProperty(**_skip(
        name="Keep Vertex Animation", default="PANEL",
        items=[("PANEL", "Panel", "As the panel says"), ("YES", "Yes", "Bake onto a copy"),
               ("NO", "No", "Replace our vertex animation on the mesh")]))

    @classmethod
    def poll(cls, context):
        return context.mode == "OBJECT" and any(o.type == "MESH" for o in context.selected_objects)

    def make_run(self, context):
        s = scene_settings(context)
        keep = s.bake_keep_vertex_animation if self.keep_vertex_animation == "PANEL" \
            else self.keep_vertex_animation == "YES"
        meshes = [o for o in context.selected_objects if o.type == "MESH"]
        try:
            return armature_bake.BakeRun(meshes, self.bones or s.bones, keep)
        except armature_bake.BakeError as exc:
            raise AnimateError(exc.code, exc.message) from None

    def finish_run(self, context, run):
        if run.state == "cancelled":
            return self.cancelled("Bake")
        if run.state == "error":
            return self.refuse(*run.error)
        try:
            infos = run.apply()
        except armature_bake.BakeError as exc:
            return self.refuse(exc.code, exc.message)
        for info in infos:
            for text in info.warnings:
                self.report({"WARNING"}, text)
        rigs = [bw.animation_info(bpy.data.objects[i.object_name])["armature"] for i in infos]
        message = (f"Baked {', '.join(i.object_name for i in infos)} to "
                   f"{', '.join(rigs)}: {infos[0].num_frames} frames.")
        session.set_outcome("", message)
        self.report({"INFO"}, message)
        return {"FINISHED"}


# ----------------------------------------------------------------------------- batch

def collection_meshes(collection) -> list:
    """Meshes of a collection and its children, each once, in the collection's order; takes
    waiting in the Variations collection are not animated again."""
    return [o for o in collection.all_objects if o.type == "MESH" and not variations.is_copy(o)]


class ANIMATEANYMESH_OT_animate_collection(_RunOperator, bpy.types.Operator):
    """Animate every mesh of the collection on its own, one after the other, each with its own
    prompt (custom property aam_prompt) or the panel's, and its own aam_then (prompts that follow,
    one per line), aam_repeat, aam_loop, aam_mask, aam_mask_falloff and aam_variations or the
    panel's. The queue is saved and survives a restart"""

    bl_idname = "animateanymesh.animate_collection"
    bl_label = "Animate Collection"
    # UNDO without REGISTER: the batch is one undo step, but no redo panel (a redo would run
    # the whole batch again, blocking Blender)
    bl_options = {"UNDO"}

    collection: bpy.props.StringProperty(
        name="Collection", description="Collection name (default: the panel's)", options={"SKIP_SAVE"})
    prompt: bpy.props.StringProperty(
        name="Prompt", description="Prompt for objects without their own (default: the panel's)",
        options={"SKIP_SAVE"})
    resume: bpy.props.BoolProperty(
        name="Resume", description="Run what is still queued instead of starting a new queue",
        options={"SKIP_SAVE"})
    cache_dir: bpy.props.StringProperty(options={"SKIP_SAVE", "HIDDEN"}, subtype="DIR_PATH")

    @classmethod
    def poll(cls, context):
        return _idle_in_object_mode(cls, context)

    def make_run(self, context):
        s = scene_settings(context)
        options, _ = options_from_settings(context)
        options.prompt = "-"  # each item carries its own prompt
        options.together = True
        if self.cache_dir:
            options.cache_dir = bpy.path.abspath(self.cache_dir)
        options.check()
        if self.resume:
            queue = session.load_queue()
            if queue is None or queue.next_queued() is None:
                raise AnimateError(ErrorCode.NOTHING_QUEUED, "the batch queue has nothing left to run: "
                                   "start a new batch with Animate Collection.")
            queue.interrupted()
        else:
            name = self.collection or (s.batch_collection.name if s.batch_collection else "")
            collection = bpy.data.collections.get(name) if name else None
            if collection is None:
                raise AnimateError(ErrorCode.BAD_INPUT, "choose a collection to animate (Batch > Collection)"
                                   if not name else f"no collection named '{name}'.")
            meshes = collection_meshes(collection)
            if not meshes:
                raise AnimateError(ErrorCode.NO_OBJECTS, f"collection '{collection.name}' holds no mesh "
                                   "objects.")
            prop = s.batch_prompt_property or batchq.DEFAULT_PROMPT_PROPERTY
            default_prompt = self.prompt if self.properties.is_property_set("prompt") else s.prompt
            defaults = {"chain": list(options.chain), "repeat": options.repeat,
                        "loop": options.loop, "mask": options.mask_group,
                        "mask_falloff": options.mask_falloff, "variations": options.variations,
                        "bones": options.bones, "keep_shape": options.keep_shape}
            entries = [(o.name, str(o.get(prop, "") or ""), self._object_settings(o, defaults))
                       for o in meshes]
            queue = batchq.BatchQueue.for_objects(entries, default_prompt,
                                                  max_attempts=s.batch_attempts,
                                                  collection=collection.name)
            for item in queue.items:  # every item's own settings, before anything runs
                if item.status == "queued":
                    self._check_item(options, item)
            session.set_queue(queue)
        settings = session.backend_settings()
        if settings.batch_runner == "RAY":
            from .cluster_batch import ClusterBatchRun, ClusterSettings

            cluster = ClusterSettings(settings.ray_address.strip(), settings.ray_workers,
                                      settings.ray_cpus_per_worker)
            return ClusterBatchRun(queue, options, cluster, save=session.save_queue)
        return BatchRun(queue, options, save=session.save_queue)

    @staticmethod
    def _object_settings(obj, defaults: dict) -> dict:
        """The panel's settings with the object's own custom properties (batch.OVERRIDE_PROPERTIES)
        over them; a bad value refuses the whole batch, naming the object and the property."""
        own = {name: obj[name] for name in batchq.OVERRIDE_PROPERTIES if name in obj}
        try:
            settings = batchq.object_settings(obj.name, own, defaults)
        except batchq.QueueError as exc:
            raise AnimateError(ErrorCode.BAD_INPUT, str(exc)) from None
        group = settings["mask"]
        if group and obj.vertex_groups.get(group) is None:
            source = (f"its custom property {batchq.MASK_PROPERTY}" if batchq.MASK_PROPERTY in own
                      else "the panel's Mask")
            raise AnimateError(ErrorCode.BAD_MASK, f"'{obj.name}' has no vertex group '{group}' ("
                               f"{source}). Fix: add the group, or set {batchq.MASK_PROPERTY} on "
                               "the object to one of its groups (empty: no mask).")
        return settings

    @staticmethod
    def _check_item(options, item) -> None:
        try:
            item_options(options, item).check()
        except AnimateError as exc:
            raise AnimateError(exc.code, f"'{item.object_name}': {exc.message}") from None

    def finish_run(self, context, run):
        counts = run.queue.counts()
        summary = (f"Batch: {counts['done']} done, {counts['failed']} failed, "
                   f"{counts['cancelled']} cancelled, {counts['queued']} queued.")
        for item in run.queue.items:
            if item.status == "failed":
                self.report({"WARNING"}, f"{item.object_name}: {item.error}")
        for text in run.warnings:
            self.report({"WARNING"}, text)
        if run.state == "error":
            code, message = run.error
            self.refuse(code, f"{message} ({summary})")
        else:
            code = (ErrorCode.ITEMS_FAILED if counts["failed"]
                    else ErrorCode.CANCELLED if run.state == "cancelled" else "")
            session.set_outcome(code, summary)
            self.report({"INFO"}, summary)
        if run.options.set_scene_range:
            frame_scene_range(context.scene, run.infos)
        redraw(context)
        # Results already written stay, as one undo step; with none, there is nothing to undo.
        return {"FINISHED"} if run.written else {"CANCELLED"}


class ANIMATEANYMESH_OT_batch_cancel_all(bpy.types.Operator):
    """Cancel the running batch job and everything still queued"""

    bl_idname = "animateanymesh.batch_cancel_all"
    bl_label = "Cancel All"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        run = session.active_run()
        if run is not None:
            return run.kind == "batch"
        queue = session.load_queue()
        return queue is not None and queue.next_queued() is not None

    def execute(self, context):
        run = session.active_run()
        if run is not None and run.kind == "batch":
            run.request_cancel()
        else:
            queue = session.load_queue()
            queue.cancel_all()
            session.save_queue()
        redraw(context)
        return {"FINISHED"}


class ANIMATEANYMESH_OT_batch_retry_failed(bpy.types.Operator):
    """Queue the failed and cancelled objects again (then Resume runs them)"""

    bl_idname = "animateanymesh.batch_retry_failed"
    bl_label = "Retry Failed"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        queue = session.load_queue()
        return (session.active_run() is None and queue is not None
                and any(i.status in ("failed", "cancelled") for i in queue.items))

    def execute(self, context):
        count = session.load_queue().retry_failed()
        session.save_queue()
        self.report({"INFO"}, f"{count} object(s) queued again; press Resume to run them.")
        redraw(context)
        return {"FINISHED"}


class ANIMATEANYMESH_OT_batch_clear(bpy.types.Operator):
    """Forget the batch queue of this file"""

    bl_idname = "animateanymesh.batch_clear"
    bl_label = "Clear Queue"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        return session.active_run() is None and session.load_queue() is not None

    def execute(self, context):
        session.set_queue(None)
        redraw(context)
        return {"FINISHED"}


CLASSES = (
    ANIMATEANYMESH_OT_bake_armature,
    ANIMATEANYMESH_OT_animate,
    ANIMATEANYMESH_OT_cancel,
    ANIMATEANYMESH_OT_new_seed,
    ANIMATEANYMESH_OT_release_memory,
    ANIMATEANYMESH_OT_remove_animation,
    ANIMATEANYMESH_OT_chain_add,
    ANIMATEANYMESH_OT_chain_remove,
    ANIMATEANYMESH_OT_keep_variation,
    ANIMATEANYMESH_OT_discard_variations,
    ANIMATEANYMESH_OT_animate_collection,
    ANIMATEANYMESH_OT_batch_cancel_all,
    ANIMATEANYMESH_OT_batch_retry_failed,
    ANIMATEANYMESH_OT_batch_clear,
)
