"""Operators of the panel: Animate, Cancel, New Seed, Release Memory, Remove Animation, and the
batch queue (Animate Collection, Cancel All, Retry Failed, Clear).

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

from . import batch as batchq
from . import blender_writeback as bw
from . import session, targets
from .backend_setup import SetupError
from .controller import AnimateError, AnimateOptions, AnimateRun, BatchRun, frame_scene_range
from .props import MAX_SEED, SOLVER_DESCRIPTION, solver_search
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
        steps=s.steps or None, solver=s.solver.strip() or None, num_traj=s.num_traj or None,
        frames=frames, strength=s.strength, set_scene_range=s.set_scene_range,
        device=DEVICE_VALUES.get(device, "auto"),
        frame_start=float(s.frame_start), frame_step=float(step), mode=s.mode,
        keep_rest=s.keep_rest, together=s.together)
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
        job = run.job
        if job is None:
            return
        stage, step, total = job.progress
        key = (job.id, stage, step * 10 // total if stage == "sample" and total else 0)
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
    steps: bpy.props.IntProperty(name="Steps", min=0, description="0: the model's default", **_skip())
    solver: bpy.props.StringProperty(name="Solver", search=solver_search,
                                     description=SOLVER_DESCRIPTION, **_skip())
    frames: bpy.props.IntProperty(name="Frames", min=0, max=limits.MAX_FRAMES,
                                  description="Retime the clip to this many frames; 0: the model's",
                                  **_skip())
    set_scene_range: bpy.props.BoolProperty(name="Set Scene Range", **_skip())
    strength: bpy.props.FloatProperty(name="Strength", min=limits.MIN_STRENGTH,
                                      max=limits.MAX_STRENGTH, default=1.0, **_skip())
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
                     "strength", "set_scene_range", "frame_start", "frame_step", "mode", "keep_rest",
                     "together")

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
        return AnimateOptions(
            prompt=self.prompt, model=self.model or "default", seed=self.seed,
            guidance=self.guidance or None, steps=self.steps or None,
            solver=self.solver.strip() or None, num_traj=self.num_traj or None,
            frames=self.frames or None, strength=self.strength, set_scene_range=self.set_scene_range,
            device=DEVICE_VALUES[self.device], frame_start=self.frame_start,
            frame_step=self.frame_step, mode=self.mode, keep_rest=self.keep_rest,
            together=self.together, cache_dir=bpy.path.abspath(self.cache_dir) if self.cache_dir else "")

    def make_run(self, context):
        options = self._options(context)
        run = AnimateRun(self._objects(context), options)
        cached = session.cached_result(run.signature) if self._may_reuse() else None
        if cached is not None:
            run.frames, run.seed, run.warnings = dict(cached[0]), cached[1], list(cached[2])
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
            message = "Animate cancelled: the scene is unchanged."
            session.set_outcome(ErrorCode.CANCELLED, message)
            self.report({"WARNING"}, message)
            return {"CANCELLED"}
        if run.state == "error":
            code, message = run.error
            return self.refuse(code, _with_hint(code, message))
        try:
            infos = run.apply()
        except AnimateError as exc:
            return self.refuse(exc.code, exc.message)
        if run.options.set_scene_range:
            frame_scene_range(context.scene, infos)
        session.remember_result(run.signature, (run.frames, run.seed, run.warnings))
        self.seed = run.seed if run.seed is not None else self.seed
        for text in run.warnings + [w for info in infos for w in info.warnings]:
            self.report({"WARNING"}, text)
        for info in infos:
            bw.note_warnings(bpy.data.objects.get(info.object_name), run.warnings + info.warnings)
        first = infos[0]
        names = ", ".join(info.object_name for info in infos)
        message = (f"Animated {names}: {first.num_frames} frames on {first.frame_start:g}-"
                   f"{first.frame_end:g} (seed {run.seed}).")
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


# ----------------------------------------------------------------------------- batch

def collection_meshes(collection) -> list:
    """Meshes of a collection and its children, each once, in the collection's order."""
    return [o for o in collection.all_objects if o.type == "MESH"]


class ANIMATEANYMESH_OT_animate_collection(_RunOperator, bpy.types.Operator):
    """Animate every mesh of the collection on its own, one after the other, each with its own
    prompt (custom property) or the panel's. The queue is saved and survives a restart"""

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
        if session.busy_message():
            cls.poll_message_set(session.busy_message())
            return False
        return context.mode == "OBJECT"

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
            entries = [(o.name, str(o.get(prop, "") or "")) for o in meshes]
            default_prompt = self.prompt if self.properties.is_property_set("prompt") else s.prompt
            queue = batchq.BatchQueue.for_objects(entries, default_prompt,
                                                  max_attempts=s.batch_attempts,
                                                  collection=collection.name)
            session.set_queue(queue)
        return BatchRun(queue, options, save=session.save_queue)

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
    ANIMATEANYMESH_OT_animate,
    ANIMATEANYMESH_OT_cancel,
    ANIMATEANYMESH_OT_new_seed,
    ANIMATEANYMESH_OT_release_memory,
    ANIMATEANYMESH_OT_remove_animation,
    ANIMATEANYMESH_OT_animate_collection,
    ANIMATEANYMESH_OT_batch_cancel_all,
    ANIMATEANYMESH_OT_batch_retry_failed,
    ANIMATEANYMESH_OT_batch_clear,
)
