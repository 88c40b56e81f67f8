"""What the add-on shares for the whole Blender session: the one backend client (so the model stays
warm between Animates), the run in progress, the setup task, the last result (for redo) and the
user data folders.

User data (models cache, logs, job files, queues, point caches) lives in the extension's user
folder, `bpy.utils.extension_path_user(__package__)`: never in the add-on folder, which Blender
replaces on every update. When the package is not installed as an extension (imported from a
checkout, as the headless CLI does) Blender's user data folder stands in.

bpy is imported inside the functions, so this module loads anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import backend_setup

PACKAGE = __package__
PACKAGE_DIR = Path(__file__).resolve().parent

_state = {"client": None, "client_key": None, "run": None, "task": None, "last_result": None,
          "last_outcome": None, "queue": None, "queue_path": None, "solvers_saved": None}


# ----------------------------------------------------------------------------- folders

_made_folders: dict[str, Path] = {}


def extension_name() -> str | None:
    """This add-on's extension module name (bl_ext.<repo>.<id>), also when it runs under its
    short name from the folder it is installed in (the headless CLI, `python -m
    animateanymesh.cli`), so both share one user folder: models, the backend environment.
    None for a development checkout."""
    import bpy

    if PACKAGE.startswith("bl_ext."):
        return PACKAGE
    for repo in bpy.context.preferences.extensions.repos:
        directory = repo.directory
        if directory and Path(directory).resolve() == PACKAGE_DIR.parent:
            return f"bl_ext.{repo.module}.{PACKAGE_DIR.name}"
    return None


def _base_dir() -> Path:
    import bpy

    name = extension_name()
    if name is not None:
        return Path(bpy.utils.extension_path_user(name, create=True))
    # a development checkout (or the CLI run from it): Blender's user data folder
    return Path(bpy.utils.user_resource("DATAFILES", path="animateanymesh", create=True))


def user_dir(sub: str = "") -> Path:
    """The add-on's user data folder (created), or one of its sub-folders. Remembered, since
    the panel asks on every redraw."""
    folder = _made_folders.get(sub)
    if folder is not None and folder.is_dir():
        return folder
    base = _base_dir()
    folder = base / sub if sub else base
    folder.mkdir(parents=True, exist_ok=True)
    _made_folders[sub] = folder
    return folder


def setup_env_dir() -> Path:
    """Where Set up backend puts the backend's virtual environment."""
    import bpy

    name = extension_name()
    if name is not None:
        return Path(bpy.utils.extension_path_user(name, path="backend-env", create=True))
    return user_dir("backend-env")


def backend_root(override: str = "") -> Path:
    """The folder holding the `backend` package: inside the installed extension (the zip ships
    it as a sub-folder), or the checkout this package sits in."""
    if override:
        return Path(override).expanduser().resolve()
    if (PACKAGE_DIR / "backend" / "server.py").is_file():
        return PACKAGE_DIR
    return PACKAGE_DIR.parent


def requirements_file(root: Path | None = None) -> Path:
    return (root or backend_root()) / "requirements.txt"


# ----------------------------------------------------------------------------- settings

@dataclass
class BackendSettings:
    """The add-on preferences as plain values (defaults when the add-on is not enabled through
    the preferences, e.g. imported by a script)."""

    python_mode: str = "AUTO"
    python_path: str = ""
    backend_folder: str = ""
    model: str = "DEFAULT"
    model_dir: str = ""
    device: str = "AUTO"
    setup_python: str = ""
    torch_index_url: str = ""
    wheelhouse: str = ""
    backend_threads: int = 0     # 0: Auto, torch's default
    batch_runner: str = "LOCAL"  # or "RAY": Animate Collection on a Ray cluster
    ray_address: str = ""        # "": Ray starts on this machine
    ray_workers: int = 0
    ray_cpus_per_worker: int = 1


def online_access() -> bool:
    """Whether the user allows Blender to go online (Preferences > System > Network; 4.2+)."""
    import bpy

    return bool(getattr(bpy.app, "online_access", True))


def preferences():
    import bpy

    addon = bpy.context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


def backend_settings() -> BackendSettings:
    prefs = preferences()
    if prefs is None:
        return BackendSettings()
    return BackendSettings(**{name: getattr(prefs, name) for name in BackendSettings.__dataclass_fields__})


def model_option(choice: str, directory: str) -> str:
    """The backend's model argument for a model choice: a name, or an absolute folder."""
    import bpy

    if choice == "OFFICIAL":
        return "official"
    if choice == "DIRECTORY":
        if not directory.strip():
            raise backend_setup.SetupError("Model is set to Directory but no folder is chosen: pick "
                                           "a model folder (one holding config.json).")
        return str(Path(bpy.path.abspath(directory)).expanduser().resolve())
    return "default"


def backend_python(settings: BackendSettings | None = None) -> backend_setup.Interpreter:
    settings = settings or backend_settings()
    root = backend_root(settings.backend_folder)
    return backend_setup.resolve_backend_python(
        settings.python_mode, settings.python_path, root, setup_env_dir(),
        requirements=requirements_file(root))


def setup_env_state() -> str:
    """missing / incomplete / outdated / ready: the environment Set up backend made."""
    root = backend_root(backend_settings().backend_folder)
    return backend_setup.environment_state(setup_env_dir(), requirements_file(root))


# ----------------------------------------------------------------------------- the client

def client(settings: BackendSettings | None = None):
    """The shared BackendClient, created on first use and again when the interpreter or the
    backend folder changes. Raises BackendError("backend_not_set_up", ...) with the fix."""
    from .backend_client import BackendClient, BackendError

    settings = settings or backend_settings()
    try:
        python = backend_python(settings).path
    except backend_setup.SetupError as exc:
        raise BackendError("backend_not_set_up", str(exc)) from None
    root = backend_root(settings.backend_folder)
    home = user_dir()
    threads = settings.backend_threads   # 0 (Auto): torch's own default, one per core
    key = (python, str(root), str(home), threads)
    current = _state["client"]
    if current is not None and _state["client_key"] == key:
        return current
    if current is not None:
        current.shutdown()
    # The backend's model cache ("official", downloads) is our user folder too.
    new = BackendClient(python, str(root), str(home), str(user_dir("logs") / "backend.log"),
                        env={"ANIMATEANYMESH_HOME": str(home)}, threads=threads)
    _state["client"], _state["client_key"] = new, key
    return new


def current_client():
    """The client if one exists (never starts anything)."""
    return _state["client"]


def _solvers_file() -> Path:
    return user_dir() / "backend_solvers.json"


def _live_solvers() -> list[dict]:
    current = _state["client"]
    info = current.info if current is not None else None
    return list(getattr(info, "solvers", None) or [])


def remember_solvers() -> None:
    """Keep the running backend's solver list in the user folder, so the panel offers it in
    later sessions before their first Animate."""
    import json

    solvers = _live_solvers()
    if not solvers or _state["solvers_saved"] == solvers:
        return
    try:
        _solvers_file().write_text(json.dumps(solvers), encoding="utf-8")
        _state["solvers_saved"] = solvers
    except OSError:
        pass  # a read-only user folder: the list is still offered this session


def known_solvers() -> list[dict]:
    """The solvers the backend offers ({"name", "evaluations_per_step", "description"}): the
    running backend's, else those the last one listed. [] before any backend has answered."""
    import json

    solvers = _live_solvers()
    if solvers:
        return solvers
    try:
        saved = json.loads(_solvers_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [s for s in saved if isinstance(s, dict) and isinstance(s.get("name"), str)]


def shutdown_backend() -> bool:
    """Stop the backend process (frees all its memory). True when one was running."""
    current = _state["client"]
    if current is None:
        return False
    was_alive = current.is_alive()
    current.shutdown()
    return was_alive


def forget_client() -> None:
    shutdown_backend()
    _state["client"] = _state["client_key"] = None


# ----------------------------------------------------------------------------- runs and tasks

def active_run():
    """The Animate / batch run in progress (None when idle or finished)."""
    run = _state["run"]
    return run if run is not None and not run.finished else None


def set_active_run(run) -> None:
    _state["run"] = run


def last_run():
    return _state["run"]


def active_task():
    task = _state["task"]
    return task if task is not None and not task.finished else None


def set_task(task) -> None:
    _state["task"] = task


def last_task():
    return _state["task"]


def busy_message() -> str:
    if active_run() is not None:
        return "AnimateAnyMesh is already animating: wait for it or press Cancel."
    if active_task() is not None:
        return f"{active_task().title} is running: wait for it or cancel it in the preferences."
    return ""


def remember_result(signature: str, result: tuple) -> None:
    """Keep the last result, (frames by object, seed, warnings), so redo (Adjust Last
    Operation) re-writes it without asking the backend again."""
    _state["last_result"] = (signature, result)


def cached_result(signature: str):
    entry = _state["last_result"]
    return entry[1] if entry is not None and entry[0] == signature else None


def set_outcome(code: str, message: str) -> None:
    """The last operator outcome (code "" on success), read by the headless CLI for exit codes."""
    _state["last_outcome"] = (code, message)


def last_outcome():
    return _state["last_outcome"]


# ----------------------------------------------------------------------------- batch queue

def queue_path() -> Path:
    import bpy

    from . import batch

    return batch.queue_file(user_dir("queues"), bpy.data.filepath)


def load_queue():
    """The batch queue of the open .blend (None when it has none), loaded from its file once."""
    from . import batch

    path = queue_path()
    if _state["queue_path"] != path:
        _state["queue_path"], _state["queue"] = path, None
        if path.is_file():
            try:
                queue = batch.BatchQueue.load(path)
            except batch.QueueError:
                queue = None
            if queue is not None and active_run() is None and queue.interrupted():
                queue.save(path)
            _state["queue"] = queue
    return _state["queue"]


def set_queue(queue) -> None:
    path = queue_path()
    _state["queue_path"], _state["queue"] = path, queue
    if queue is None:
        if path.is_file():
            path.unlink()
    else:
        queue.save(path)


def save_queue() -> None:
    queue, path = _state["queue"], _state["queue_path"]
    if queue is not None and path is not None:
        queue.save(path)


def forget_queue() -> None:
    """After loading another .blend: its own queue is read on the next look."""
    _state["queue_path"] = _state["queue"] = None


def environment_summary() -> str:
    """One line about the backend for the preferences (never starts anything)."""
    c = _state["client"]
    if c is None or not c.is_alive():
        return "Backend: not running"
    info = c.info
    if info is None:
        return f"Backend: starting (pid {c.pid})"
    return (f"Backend {info.backend_version} running (pid {c.pid}), torch {info.torch_version}, "
            f"devices: {', '.join(info.devices)}")

