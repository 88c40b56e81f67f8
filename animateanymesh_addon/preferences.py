"""Add-on preferences: which Python runs the backend, the default model and device, and the two
long actions that prepare the machine: Set up backend and Download official weights.

Both actions run child processes in the background (backend_setup.BackgroundTask) and are
modal operators that poll them: progress shows in the preferences and the status bar, Blender
stays usable, and Cancel stops them. Run from a script (execute), they block until done.
"""

from pathlib import Path

import bpy

from . import backend_setup, session
from .operators import clear_status, redraw, show_status

PYTHON_ITEMS = [
    ("AUTO", "Auto", f"${backend_setup.ENV_VAR}, a .venv beside the backend (a development "
     "checkout), or the environment Set up backend created"),
    ("PATH", "Path", "A Python interpreter you choose, with the backend's packages installed"),
]
MODEL_ITEMS = [
    ("DEFAULT", "Embedded Default", "The small model shipped with the add-on (offline)"),
    ("OFFICIAL", "Official", "The official AnimateAnyMesh weights (Download Official Weights)"),
    ("DIRECTORY", "Directory", "A model folder (config.json + weights)"),
]
DEVICE_ITEMS = [
    ("AUTO", "Auto", "The GPU when there is one, else the CPU"),
    ("CPU", "CPU", "Always the CPU"),
    ("CUDA", "CUDA GPU", "An NVIDIA GPU"),
]
OFFLINE_MESSAGE = ("Online access is disabled: allow it in Preferences > System > Network > Allow "
                   "Online Access (or start Blender with --online-mode)")


def _backend_changed(self, context) -> None:
    # Stop the backend started with the old setting now (not at the next Animate), unless it
    # is working: session.client() notices the change and restarts it once the run is over.
    if session.active_run() is None:
        session.forget_client()


def _offline_refusal(what: str) -> str:
    return f"{OFFLINE_MESSAGE}, then try {what} again."


class AnimateAnyMeshPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python_mode: bpy.props.EnumProperty(name="Backend Python", items=PYTHON_ITEMS, default="AUTO",
                                        update=_backend_changed)
    python_path: bpy.props.StringProperty(
        name="Interpreter", subtype="FILE_PATH", update=_backend_changed,
        description="A Python 3.11+ with the backend's requirements (torch, ...) installed")
    model: bpy.props.EnumProperty(name="Default Model", items=MODEL_ITEMS, default="DEFAULT")
    model_dir: bpy.props.StringProperty(name="Model Folder", subtype="DIR_PATH")
    device: bpy.props.EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO")
    backend_folder: bpy.props.StringProperty(
        name="Backend Folder", subtype="DIR_PATH", update=_backend_changed,
        description="Folder holding the backend package (default: the one shipped with the add-on)")
    setup_python: bpy.props.StringProperty(
        name="Setup Python", subtype="FILE_PATH",
        description="Python 3.11+ that creates the backend environment (default: found on the "
                    "system, else Blender's own)")
    torch_index_url: bpy.props.StringProperty(
        name="Extra Package Index",
        description="Extra pip index for torch, e.g. a CUDA build on Windows "
                    "(https://download.pytorch.org/whl/cuXXX)")
    wheelhouse: bpy.props.StringProperty(
        name="Wheelhouse", subtype="DIR_PATH",
        description="Set up offline: install the backend's packages only from this folder of "
                    "wheels (made with `python build.py --wheelhouse DIR` on a machine online)")
    backend_threads: bpy.props.IntProperty(
        name="Backend Threads", default=0, min=0, max=256, update=_backend_changed,
        description="CPU threads the backend's model uses; 0: Auto (one per core). Fewer leave "
                    "more of the machine to other programs")
    batch_runner: bpy.props.EnumProperty(
        name="Batches Run On", default="LOCAL",
        items=[("LOCAL", "This Machine", "Animate Collection runs one object after another in the "
                "warm backend"),
               ("RAY", "Ray Cluster", "Animate Collection sends every object to a Ray cluster at "
                "once (needs Ray in the backend's environment: pip install -r "
                "requirements-ray.txt)")])
    ray_address: bpy.props.StringProperty(
        name="Ray Address",
        description="The cluster to join: HOST:6379, ray://HOST:10001 or auto (this machine's "
                    "running cluster); empty: start Ray on this machine")
    ray_workers: bpy.props.IntProperty(
        name="Ray Workers", default=0, min=0, max=4096,
        description="Workers, each with one warm model; 0: one per GPU of the cluster, else one "
                    "per CPUs Per Worker")
    ray_cpus_per_worker: bpy.props.IntProperty(
        name="CPUs Per Worker", default=1, min=1, max=256,
        description="CPU cores each Ray worker asks for (its torch threads)")
    show_advanced: bpy.props.BoolProperty(name="Advanced", default=False)

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.use_property_split = True
        col.prop(self, "python_mode")
        if self.python_mode == "PATH":
            col.prop(self, "python_path")
        try:
            found = session.backend_python()
            col.label(text=f"Using {found.path} ({found.source})", icon="CHECKMARK")
        except backend_setup.SetupError as exc:
            col.label(text=str(exc).split(":")[0], icon="ERROR")
        state = session.setup_env_state()
        if state in ("incomplete", "outdated"):
            row = col.row(align=True)
            row.label(text=f"The environment Set up Backend made is {state}", icon="ERROR")
            row.operator("animateanymesh.setup_backend", text="Repair", icon="TOOL_SETTINGS")
            row.operator("animateanymesh.remove_backend_env", text="Remove", icon="TRASH")

        task = session.last_task()
        row = layout.row(align=True)
        if task is not None and not task.finished:
            if hasattr(row, "progress"):
                row.progress(factor=task.fraction, type="BAR", text=task.text[:120])
            else:
                row.label(text=f"{task.text[:120]} ({task.fraction * 100:.0f}%)")
            row.operator("animateanymesh.cancel", text="", icon="CANCEL")
        else:
            row.operator("animateanymesh.setup_backend", icon="CONSOLE")
            row.operator("animateanymesh.download_official", icon="IMPORT")
            if task is not None and task.state == "error":
                layout.label(text=task.text[:160], icon="ERROR")
        if not session.online_access():
            layout.label(text="Online access is off (Preferences > System > Network): set up from "
                              "a Wheelhouse (Advanced); downloads are disabled", icon="INFO")

        col = layout.column()
        col.use_property_split = True
        col.prop(self, "model")
        if self.model == "DIRECTORY":
            col.prop(self, "model_dir")
        col.prop(self, "device")

        col = layout.column()
        col.use_property_split = True
        col.prop(self, "batch_runner")
        if self.batch_runner == "RAY":
            col.prop(self, "ray_address")
            col.prop(self, "ray_workers")
            col.prop(self, "ray_cpus_per_worker")

        row = layout.row()
        row.label(text=session.environment_summary())
        row.operator("animateanymesh.release_memory", icon="TRASH")

        layout.prop(self, "show_advanced", icon="TRIA_DOWN" if self.show_advanced else "TRIA_RIGHT",
                    emboss=False)
        if self.show_advanced:
            col = layout.column()
            col.use_property_split = True
            col.prop(self, "backend_folder")
            col.prop(self, "setup_python")
            col.prop(self, "torch_index_url")
            col.prop(self, "wheelhouse")
            col.prop(self, "backend_threads")
            col.label(text=f"User data: {session.user_dir()}")


# ----------------------------------------------------------------------------- the two tasks

class _TaskOperator:
    """Runs a BackgroundTask: modal with a timer from the UI, blocking from scripts."""

    title = ""
    _task = None
    _timer = None

    def make_task(self, context):  # -> BackgroundTask or raise SetupError
        raise NotImplementedError

    def task_done(self, context, task) -> None:
        pass

    def needs_network(self, context) -> bool:
        return True

    def _prepare(self, context):
        busy = session.busy_message()
        if busy:
            self.report({"ERROR"}, busy)
            return None
        if self.needs_network(context) and not session.online_access():
            self.report({"ERROR"}, _offline_refusal(self.title))
            return None
        try:
            task = self.make_task(context)
        except backend_setup.SetupError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        session.set_task(task)
        return task.start()

    def execute(self, context):
        task = self._prepare(context)
        if task is None:
            return {"CANCELLED"}
        try:
            task.wait()
        except KeyboardInterrupt:
            task.cancel()
            task.wait()
        return self._finish(context, task)

    def invoke(self, context, event):
        task = self._prepare(context)
        if task is None:
            return {"CANCELLED"}
        self._task = task
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        show_status(context, task)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._task.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        redraw(context)
        if not self._task.finished:
            return {"PASS_THROUGH"}
        self._end(context)
        return self._finish(context, self._task)

    def cancel(self, context):
        if self._task is not None:
            self._task.cancel()
        self._end(context)

    def _end(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        clear_status(context)
        redraw(context)

    def _finish(self, context, task):
        if task.state == "done":
            message = self.task_done(context, task)
            self.report({"INFO"}, message)
            return {"FINISHED"}
        if task.state == "cancelled":
            self.report({"WARNING"}, f"{self.title} cancelled.")
            return {"CANCELLED"}
        self.report({"ERROR"}, task.text)
        return {"CANCELLED"}


class ANIMATEANYMESH_OT_setup_backend(_TaskOperator, bpy.types.Operator):
    """Create a Python environment for the backend in the add-on's user folder and install its
    packages (torch and the model libraries, a few GB; needs online access)"""

    bl_idname = "animateanymesh.setup_backend"
    bl_label = "Set up Backend"
    title = "Set up backend"

    def needs_network(self, context) -> bool:
        return not session.backend_settings().wheelhouse

    def make_task(self, context):
        settings = session.backend_settings()
        root = session.backend_root(settings.backend_folder)
        env_dir = session.setup_env_dir()
        base = backend_setup.find_setup_python(settings.setup_python, backend_setup.blender_python())
        wheelhouse = bpy.path.abspath(settings.wheelhouse) if settings.wheelhouse else ""
        # Ray is an optional extra: installed when batches are to run on a cluster
        extras = [root / "requirements-ray.txt"] if settings.batch_runner == "RAY" else []
        steps = backend_setup.setup_steps(base, env_dir, session.requirements_file(root),
                                          settings.torch_index_url, wheelhouse=wheelhouse,
                                          extras=extras)
        return backend_setup.BackgroundTask(self.title, steps, cwd=root,
                                            log_path=session.user_dir("logs") / "setup.log")

    def task_done(self, context, task):
        env_python = backend_setup.venv_python(session.setup_env_dir())
        prefs = session.preferences()
        if prefs is not None:
            settings = session.backend_settings()
            root = session.backend_root(settings.backend_folder)
            auto = backend_setup.resolve_backend_python(
                "AUTO", "", root, session.setup_env_dir(),
                requirements=session.requirements_file(root))
            if Path(auto.path) == env_python:
                prefs.python_mode = "AUTO"
            else:  # an env var or a checkout's .venv would win under Auto: name ours explicitly
                prefs.python_mode, prefs.python_path = "PATH", str(env_python)
        session.forget_client()
        return f"Backend ready ({task.last_line}); it runs with {env_python}."


class ANIMATEANYMESH_OT_download_official(_TaskOperator, bpy.types.Operator):
    """Download the official AnimateAnyMesh weights (about 1 GB from Hugging Face) into the
    add-on's user folder and convert them (needs online access)"""

    bl_idname = "animateanymesh.download_official"
    bl_label = "Download Official Weights"
    title = "Download official weights"

    def make_task(self, context):
        settings = session.backend_settings()
        python = session.backend_python(settings).path
        root = session.backend_root(settings.backend_folder)
        return backend_setup.BackgroundTask(
            self.title, backend_setup.download_steps(python, session.user_dir()), cwd=root,
            log_path=session.user_dir("logs") / "download.log")

    def task_done(self, context, task):
        return (f"Official weights installed in {session.user_dir('models') / 'official'}; choose "
                "Model: Official.")


class ANIMATEANYMESH_OT_remove_backend_env(bpy.types.Operator):
    """Delete the Python environment Set up Backend made (to start over, or free its space)"""

    bl_idname = "animateanymesh.remove_backend_env"
    bl_label = "Remove Backend Environment"

    @classmethod
    def poll(cls, context):
        if session.busy_message():
            cls.poll_message_set(session.busy_message())
            return False
        return session.setup_env_state() != "missing"

    def execute(self, context):
        import shutil

        env_dir = session.setup_env_dir()
        session.forget_client()  # it may be running from there
        shutil.rmtree(env_dir, ignore_errors=True)
        if env_dir.exists() and any(env_dir.iterdir()):
            self.report({"ERROR"}, f"could not remove all of {env_dir}: close programs using it "
                        "and try again.")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Removed the backend environment {env_dir}.")
        return {"FINISHED"}


CLASSES = (AnimateAnyMeshPreferences, ANIMATEANYMESH_OT_setup_backend,
           ANIMATEANYMESH_OT_download_official, ANIMATEANYMESH_OT_remove_backend_env)
