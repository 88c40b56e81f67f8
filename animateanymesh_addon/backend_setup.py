"""The backend's Python environment: find it, create it, and run long setup commands in the
background with progress and cancel.

No bpy here (the operators in preferences.py drive these pieces), so the logic is tested without
Blender. Three things are decided here:

* which interpreter runs the backend ("Auto": $ANIMATEANYMESH_PYTHON, a `.venv` next to the
  backend root as in a development checkout, then the environment Set up backend created);
* which Python creates that environment (Python 3.11+ found on the system, or Blender's own,
  which ships `venv` and `ensurepip`);
* the commands that create it and install the backend's requirements, each run as a child
  process whose output becomes a progress fraction and a status line.

An environment Set up backend made is used only once its last step, an import of the whole
backend, succeeded and left a marker in it: a set-up that failed, was cancelled or killed leaves
an incomplete environment, which the preferences offer to repair or remove instead of starting
a backend that cannot work. Packages come from the index, or with no network at all from a
wheelhouse folder (`python build.py --wheelhouse DIR`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ENV_VAR = "ANIMATEANYMESH_PYTHON"
MIN_PYTHON = (3, 11)
NOT_SET_UP = ("backend not set up: open Preferences > Add-ons > AnimateAnyMesh > Set up backend "
              "(or choose a Python interpreter that has the backend's packages under Backend Python).")
# Imported by the check step: the whole inference chain, so a missing package shows up here
# and not at the first Animate.
CHECK_SCRIPT = "import torch, backend.pipeline; print('backend ok, torch', torch.__version__)"
# Written into the environment by the check step, after its imports succeeded.
VERIFIED_MARKER = "animateanymesh-verified.txt"
_MARK_SCRIPT = ("import pathlib, sys; pathlib.Path(sys.prefix, {name!r}).write_text({stamp!r}); "
                "print('environment verified')")
# pip's words when the index cannot be reached (DNS, refused, timeouts, proxies)
_NETWORK_LINE = re.compile(r"(Failed to establish a new connection|Temporary failure in name "
                           r"resolution|Name or service not known|Network is unreachable|Connection "
                           r"refused|ConnectTimeout|ReadTimeout|ProxyError|Could not fetch URL|"
                           r"getaddrinfo failed|No route to host)", re.IGNORECASE)
_VERSION_SCRIPT = "import sys; print('%d.%d' % sys.version_info[:2])"


class SetupError(Exception):
    """A setup problem with the fix in its message."""


# ----------------------------------------------------------------------------- interpreters

def venv_python(env_dir) -> Path:
    """The interpreter inside a virtual environment folder."""
    env_dir = Path(env_dir)
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


@dataclass(frozen=True)
class Interpreter:
    path: str
    source: str  # where it came from, shown in the preferences


def auto_candidates(backend_root, setup_env_dir, environ=None) -> list[Interpreter]:
    """Interpreters "Auto" considers, in order of preference (existing or not)."""
    environ = os.environ if environ is None else environ
    out = []
    if environ.get(ENV_VAR):
        out.append(Interpreter(str(Path(environ[ENV_VAR]).expanduser()), ENV_VAR))
    if backend_root:
        # A development checkout keeps its environment beside backend/ (scripts/setup.sh).
        out.append(Interpreter(str(venv_python(Path(backend_root) / ".venv")), "development .venv"))
    if setup_env_dir:
        out.append(Interpreter(str(venv_python(setup_env_dir)), "Set up backend"))
    return out


def requirements_stamp(requirements) -> str:
    """What an environment was verified against: a new requirements list needs a new set-up."""
    import hashlib

    return hashlib.sha256(Path(requirements).read_bytes()).hexdigest()[:16]


def environment_state(env_dir, requirements=None) -> str:
    """"missing" (nothing there), "incomplete" (made but never verified: a set-up that failed or
    was stopped), "outdated" (verified against other requirements) or "ready"."""
    env_dir = Path(env_dir)
    if not venv_python(env_dir).is_file():
        return "missing" if not env_dir.exists() or not any(env_dir.iterdir()) else "incomplete"
    marker = env_dir / VERIFIED_MARKER
    if not marker.is_file():
        return "incomplete"
    if requirements is not None and Path(requirements).is_file():
        if marker.read_text(encoding="utf-8").strip() != requirements_stamp(requirements):
            return "outdated"
    return "ready"


def resolve_backend_python(mode: str, explicit: str, backend_root, setup_env_dir,
                           environ=None, requirements=None) -> Interpreter:
    """The interpreter that runs the backend, or SetupError with the fix.

    mode "PATH" uses `explicit` only (an error if it is missing: a typo must not silently fall
    back to another environment); "AUTO" takes the first existing auto candidate.
    """
    if mode == "PATH":
        path = Path(explicit).expanduser() if explicit else None
        if path is None or not str(explicit).strip():
            raise SetupError("no backend Python interpreter is set: choose one under Preferences > "
                             "Add-ons > AnimateAnyMesh > Backend Python, or switch it to Auto.")
        if not path.is_file():
            raise SetupError(f"the backend Python interpreter {path} does not exist: fix the path "
                             "under Preferences > Add-ons > AnimateAnyMesh > Backend Python, or "
                             "switch it to Auto and run Set up backend.")
        return Interpreter(str(path), "preferences")
    for candidate in auto_candidates(backend_root, setup_env_dir, environ):
        if not Path(candidate.path).is_file():
            continue
        if candidate.source == "Set up backend":
            state = environment_state(setup_env_dir, requirements)
            if state != "ready":
                raise SetupError(f"the backend environment in {setup_env_dir} is {state}"
                                 f"{' (its set-up did not finish)' if state == 'incomplete' else ''}: "
                                 "press Repair (Set up backend) or Remove under Preferences > "
                                 "Add-ons > AnimateAnyMesh.")
        return candidate
    raise SetupError(NOT_SET_UP)


def python_version(command: list[str], timeout: float = 15.0) -> tuple[int, int] | None:
    """(major, minor) of an interpreter command, or None when it does not run."""
    try:
        done = subprocess.run(command + ["-c", _VERSION_SCRIPT], capture_output=True, text=True,
                              timeout=timeout, env=clean_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.fullmatch(r"(\d+)\.(\d+)", done.stdout.strip())
    if done.returncode != 0 or not m:
        return None
    return int(m.group(1)), int(m.group(2))


def setup_python_candidates(explicit: str = "", blender_python: str | None = None,
                            which: Callable[[str], str | None] = shutil.which) -> list[list[str]]:
    """Commands that may start a Python able to create the backend environment, best first:
    the one named in the preferences, python3.11 / py -3.11, other python3, then Blender's own
    interpreter (it ships venv and ensurepip, so setup works without a system Python)."""
    out: list[list[str]] = []
    if explicit:
        out.append([str(Path(explicit).expanduser())])
    for name in ("python3.11", "python3.12", "python3.13"):
        found = which(name)
        if found:
            out.append([found])
    if os.name == "nt" and which("py"):
        out.append([which("py"), "-3.11"])
    for name in ("python3", "python"):
        found = which(name)
        if found:
            out.append([found])
    if blender_python:
        out.append([blender_python])
    unique, seen = [], set()
    for command in out:
        key = tuple(command)
        if key not in seen:
            seen.add(key)
            unique.append(command)
    return unique


def find_setup_python(explicit: str = "", blender_python: str | None = None,
                      version_of: Callable[[list[str]], tuple[int, int] | None] = python_version,
                      which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The first candidate that runs Python >= 3.11, else SetupError naming what was tried."""
    tried = []
    for command in setup_python_candidates(explicit, blender_python, which):
        version = version_of(command)
        if version is not None and version >= MIN_PYTHON:
            return command
        tried.append(f"{' '.join(command)} ({'%d.%d' % version if version else 'does not run'})")
    raise SetupError("Set up backend needs Python 3.11 or newer to create the environment; tried: "
                     f"{'; '.join(tried) or 'nothing found'}. Install Python 3.11 (python.org) "
                     "or name an interpreter under Preferences > Add-ons > AnimateAnyMesh.")


def clean_env(extra: dict | None = None) -> dict:
    """The environment for another Python installation: none of Blender's interpreter settings."""
    env = dict(os.environ)
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE"):
        env.pop(name, None)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"  # output arrives line by line, so progress moves
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------- commands

@dataclass
class Step:
    """One child process of a background task; `progress` maps its output lines to 0..1."""

    label: str
    argv: list[str]
    progress: Callable[[str, "Step"], float | None] | None = None
    state: dict = field(default_factory=dict)  # scratch space for the progress parser


def requirement_count(requirements: Path) -> int:
    """Top-level requirements in a requirements file (comments, options and blanks skipped)."""
    count = 0
    for line in Path(requirements).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            count += 1
    return count


def pip_progress(line: str, step: Step) -> float | None:
    """Rough progress of `pip install` from its output: packages collected so far (pip does not
    say how many dependencies there will be, so the curve only approaches its share), then the
    install phase. Returns None for lines that say nothing new."""
    expected = max(step.state.get("expected", 10), 1)
    if line.startswith("Collecting ") or line.startswith("Requirement already satisfied"):
        step.state["seen"] = step.state.get("seen", 0) + 1
        # dependencies roughly triple the list; cap below the install phase
        return min(0.75, 0.75 * step.state["seen"] / (3.0 * expected))
    if line.startswith("Installing collected packages"):
        return 0.8
    if line.startswith("Successfully installed"):
        return 1.0
    return None


_PERCENT = re.compile(r"(\d{1,3})%\|")
# "error: ..." from our CLI, "ERROR: ..." from pip, the last line of a Python traceback
_ERROR_LINE = re.compile(r"^(error:|ERROR:|[A-Za-z_.]*(Error|Exception):)")


def download_progress(line: str, step: Step) -> float | None:
    """Progress of the four official files from huggingface_hub's bars ("name:  45%|###  |")."""
    m = _PERCENT.search(line)
    if not m:
        return None
    pct = min(int(m.group(1)), 100) / 100.0
    files = step.state.setdefault("files", 0)
    last = step.state.get("last", 0.0)
    if pct < last:  # a new bar started: the previous file is complete
        files = step.state["files"] = files + 1
    step.state["last"] = pct
    total = step.state.get("expected", 4)
    return min((files + pct) / total, 0.99)


def setup_steps(base_python: list[str], env_dir, requirements, index_url: str = "",
                wheelhouse: str = "", check_script: str | None = None, extras=()) -> list[Step]:
    """Create the environment (unless it exists), install the requirements and the `extras`
    lists (optional features, e.g. Ray) from the index, or only from `wheelhouse` when one is
    given, check the import, mark the environment verified. Any earlier mark is removed now:
    until the new check passes the environment is not used."""
    env_dir, requirements = Path(env_dir), Path(requirements)
    if not requirements.is_file():
        raise SetupError(f"the requirements list {requirements} is missing: reinstall the extension.")
    if wheelhouse and not Path(wheelhouse).is_dir():
        raise SetupError(f"the wheelhouse folder {wheelhouse} does not exist: make one with `python "
                         "build.py --wheelhouse DIR` on a machine with internet, copy it here, and "
                         "choose it under Wheelhouse.")
    (env_dir / VERIFIED_MARKER).unlink(missing_ok=True)
    py = str(venv_python(env_dir))
    steps = []
    if not Path(py).is_file():
        steps.append(Step("Creating the environment", base_python + ["-m", "venv", str(env_dir)]))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           "-r", str(requirements)]
    for extra in extras:
        pip += ["-r", str(extra)]
    if wheelhouse:
        pip += ["--no-index", "--find-links", str(wheelhouse)]  # offline: never asks an index
    elif index_url:
        # e.g. a CUDA build of torch on Windows, where PyPI only has the CPU one
        pip += ["--extra-index-url", index_url]
    steps.append(Step("Installing packages", pip, pip_progress,
                      {"expected": requirement_count(requirements)
                       + sum(requirement_count(extra) for extra in extras)}))
    # runs with the backend root as cwd and PYTHONPATH (BackgroundTask's cwd)
    steps.append(Step("Checking the backend", [py, "-c", check_script or CHECK_SCRIPT]))
    steps.append(Step("Marking the environment verified", [py, "-c", _MARK_SCRIPT.format(
        name=VERIFIED_MARKER, stamp=requirements_stamp(requirements))]))
    return steps


def download_steps(python: str, cache_dir) -> list[Step]:
    return [Step("Downloading the official weights",
                 [python, "-m", "backend", "download-official", "--cache", str(cache_dir)],
                 download_progress, {"expected": 4})]


# ----------------------------------------------------------------------------- background task

class BackgroundTask:
    """Runs steps one after another in a thread; the caller polls `state`, `fraction`, `text`.

    Everything the children print goes to `log_path` (and the last line to `last_line`). cancel()
    stops the running child (its whole process group, pip's own children included) and skips the
    rest. Attributes are only assigned whole, so reading them from Blender's main thread is safe.
    """

    def __init__(self, title: str, steps: list[Step], *, cwd=None, env: dict | None = None,
                 log_path=None):
        self.title = title
        self.steps = steps
        self.cwd = str(cwd) if cwd else None
        self.env = clean_env(env)
        self.log_path = Path(log_path) if log_path else None
        self.state = "pending"   # pending, running, done, error, cancelled
        self.step_index = 0
        self.step_fraction = 0.0
        self.last_line = ""
        self.error_line = ""     # the last line that says what went wrong, for the message
        self.network_line = ""   # a line saying the package index could not be reached
        self.error = ""
        self.started_at: float | None = None
        self._cancel = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    # ---- reading

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        n = max(len(self.steps), 1)
        return min((self.step_index + self.step_fraction) / n, 1.0)

    @property
    def text(self) -> str:
        if self.state == "running" and self.step_index < len(self.steps):
            label = self.steps[self.step_index].label
            detail = f": {self.last_line[:80]}" if self.last_line else ""
            return f"{self.title} ({self.step_index + 1}/{len(self.steps)}) {label}{detail}"
        if self.state == "error":
            return f"{self.title} failed: {self.error}"
        return f"{self.title}: {self.state}"

    # ---- control

    def start(self) -> "BackgroundTask":
        self.state = "running"
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="aam-setup", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        self._stop_child()

    def wait(self, timeout: float | None = None) -> str:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    # ---- the thread

    def _run(self) -> None:
        log = None
        try:
            if self.log_path:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(self.log_path, "a", encoding="utf-8")
                log.write(f"\n==== {self.title} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            for index, step in enumerate(self.steps):
                self.step_index, self.step_fraction, self.last_line = index, 0.0, ""
                if self._cancel.is_set():
                    break
                code = self._run_step(step, log)
                if self._cancel.is_set():
                    break
                if code != 0:
                    where = f"; the full output is in {self.log_path}" if self.log_path else ""
                    if self.network_line:
                        # pip goes on to say "no matching distribution", which hides the cause
                        self.error = (f"{step.label} failed: the package index could not be reached "
                                      f"({self.network_line}). Connect to the internet, or set "
                                      "up offline from a wheelhouse folder (Preferences > Wheelhouse)"
                                      f"{where}")
                    else:
                        said = self.error_line or self.last_line
                        tail = f" ({said})" if said else ""
                        self.error = f"{step.label} failed with exit status {code}{tail}{where}"
                    self.state = "error"
                    return
                self.step_fraction = 1.0
            self.state = "cancelled" if self._cancel.is_set() else "done"
        except OSError as exc:
            self.error = f"cannot run {exc.filename or 'a setup command'}: {exc.strerror or exc}"
            self.state = "error"
        finally:
            if log is not None:
                log.write(f"==== {self.state}{': ' + self.error if self.error else ''}\n")
                log.close()

    def _run_step(self, step: Step, log) -> int:
        if log is not None:
            log.write("$ " + " ".join(step.argv) + "\n")
            log.flush()
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # cancel stops pip and everything it started
        env = dict(self.env)
        if self.cwd:
            env["PYTHONPATH"] = self.cwd  # the backend package, for the check / download steps
        # text mode reads "\r" as a line end too, so progress bars arrive as lines
        self._proc = proc = subprocess.Popen(step.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True, encoding="utf-8", errors="replace", **kwargs)
        try:
            for raw in proc.stdout:
                line = raw.strip()
                if not line:
                    continue
                if log is not None:
                    log.write(line + "\n")
                self.last_line = line
                if _ERROR_LINE.match(line):
                    self.error_line = line
                found = _NETWORK_LINE.search(line)
                if found:  # the cause itself, not pip's wrapping of reprs around it
                    self.network_line = line[found.start():].split("'")[0].split('")')[0][:160]
                if step.progress is not None:
                    value = step.progress(line, step)
                    if value is not None:
                        self.step_fraction = max(self.step_fraction, float(value))
            return proc.wait()
        finally:
            proc.stdout.close()
            self._proc = None

    def _stop_child(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                proc.terminate()
            else:
                os.killpg(proc.pid, signal.SIGTERM)  # our own child's group (start_new_session)
        except (OSError, ProcessLookupError):
            pass


def blender_python() -> str | None:
    """Blender's own interpreter when running inside Blender (sys.executable), else None."""
    exe = getattr(sys, "executable", "")
    return exe if exe and Path(exe).is_file() else None
