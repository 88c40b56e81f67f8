"""The add-on's side of the seam: start the backend process, keep it warm, run jobs, watch it.

Runs inside Blender, so it uses the standard library and numpy only: no bpy here (the operators
own Blender) and never torch (that lives in the backend's own interpreter).

    client = BackendClient(python, backend_root, work_dir, log_path)
    job = client.submit(vertices, faces, "a dragon flaps its wings", steps=32)
    while job.state == "running":          # a modal timer calls poll() instead of looping
        for message in job.poll(): ...     # progress, warning, result, error, cancelled
    frames = job.result_frames()           # (T, N, 3) in the caller's vertex order
    takes = job.result_takes()             # (K, T, N, 3) when the request asked for variations

A job never raises for a backend failure: it ends in state "error" with `error = (code,
message)`. A dead or silent backend ends the job with code "backend_died"; the next submit
starts a fresh process.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np

# Polygons: the faces type callers pass to submit
from .seam import ErrorCode, Polygons, SeamError, Stage, arrays, protocol  # noqa: F401

log = logging.getLogger("animateanymesh.backend_client")

# The request's options, as the protocol declares them (a new option needs no edit here).
JOB_OPTIONS = tuple(f.name for f in dataclasses.fields(protocol.AnimateRequest)
                    if f.name not in ("id", "mesh_path", "out_path", "prompt"))
FINAL_STATES = ("done", "error", "cancelled")
STALE_JOB_FOLDER_S = 24 * 3600


class BackendError(Exception):
    """The backend cannot be used right now; `message` is a sentence with the fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ----------------------------------------------------------------------------- the log

START_MARK = "==== backend start"
_ERROR_LINE = re.compile(r"(^[A-Za-z_][\w.]*(Error|Exception)\b)|(\bError\b.*:)|(\berror:)")


def failure_cause(log_path, tail_bytes: int = 32768) -> str:
    """The line of the newest backend run's log that says why it stopped (an exception's last
    line, "No module named numpy"), so the panel can show the cause instead of only the log's
    path; "" when the log says nothing useful."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - tail_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    run = text.rsplit(START_MARK, 1)[-1].splitlines()[1:] if START_MARK in text else text.splitlines()
    for line in reversed(run):
        line = line.strip()
        if line and _ERROR_LINE.search(line):
            return line if len(line) <= 200 else line[:197] + "..."
    return ""


# ----------------------------------------------------------------------------- one process

class _Session:
    """One backend process and what the client knows about it. A restart makes a new one, so a
    late message from an old process can never reach a new job."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.ready = threading.Event()
        self.info = None                      # the Ready message
        self.failure: BackendError | None = None
        self.last_seen = time.monotonic()
        self.stopping = False                 # we asked it to stop: its exit is no failure
        self.jobs: dict[str, "Job"] = {}
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.failure is None and self.proc.poll() is None


class Job:
    """One animate request. Its state changes only in poll() / wait(), on the caller's thread."""

    def __init__(self, client: "BackendClient", session: _Session, job_id: str, folder: Path,
                 num_vertices: int):
        self.id = job_id
        self.state = "running"
        self.progress: tuple[str, int, int] = (Stage.QUEUED.value, 0, 0)
        self.warnings: list[str] = []
        self.error: tuple[str, str] | None = None
        self.seed: int | None = None
        self.seeds: list[int] = []
        self.seconds: float | None = None
        self.num_vertices = num_vertices
        self._client = client
        self._session = session
        self._folder = folder
        self._inbox: queue.Queue = queue.Queue()
        self._takes: np.ndarray | None = None
        self._cancel_sent_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def poll(self) -> list:
        """Apply and return the messages that arrived since the last call (never blocks)."""
        self._client._check_health(self._session, self)
        applied = []
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return applied
            if self._apply(message):
                applied.append(message)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends or `timeout` seconds pass; returns the state (headless use)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            self.poll()
            if self.finished:
                break
            pause = 0.2
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                pause = min(pause, left)
            try:
                self._apply(self._inbox.get(timeout=pause))
            except queue.Empty:
                pass
        return self.state

    def cancel(self) -> None:
        """Ask the backend to stop this job; it ends as "cancelled" (or "done" if it won the race)."""
        if self.finished or self._cancel_sent_at is not None:
            return
        self._cancel_sent_at = time.monotonic()
        self._client._send(self._session, protocol.Cancel(id=self.id))

    def result_frames(self) -> np.ndarray:
        """(T, N, 3) float32 trajectories in the submitted vertex order (the first take)."""
        return self.result_takes()[0]

    def result_takes(self) -> np.ndarray:
        """(K, T, N, 3): every variation, take k made with seeds[k]."""
        if self.state != "done":
            reason = f": {self.error[1]}" if self.error else ""
            raise BackendError(ErrorCode.NO_RESULT,
                               f"job {self.id} has no result (state {self.state}){reason}")
        return self._takes

    # ---- internals

    def _apply(self, message) -> bool:
        if self.finished:
            return False  # e.g. a result that raced a watchdog verdict
        if isinstance(message, protocol.Progress):
            self.progress = (message.stage, message.step, message.total)
        elif isinstance(message, protocol.Notice):
            self.warnings.append(message.message)
        elif isinstance(message, protocol.Result):
            self._take_result(message)
        elif isinstance(message, protocol.Error):
            self._finish("error", (message.code, message.message))
        elif isinstance(message, protocol.Cancelled):
            self._finish("cancelled")
        return True

    def _take_result(self, message) -> None:
        try:
            takes, seeds = arrays.read_result_file(message.out_path, self.num_vertices)
        except SeamError as exc:
            self._finish("error", (exc.code, exc.message))
            return
        self._takes, self.seeds, self.seconds = takes, seeds, message.seconds
        self.seed = seeds[0]
        self._finish("done")

    def _finish(self, state: str, error: tuple[str, str] | None = None) -> None:
        self.state = state
        self.error = error
        with self._session.lock:
            self._session.jobs.pop(self.id, None)
        shutil.rmtree(self._folder, ignore_errors=True)


class BackendClient:
    """Owns the backend process: starts it on demand, keeps it warm, restarts it after a death."""

    def __init__(self, python: str, backend_root: str, work_dir: str, log_path: str,
                 env: dict | None = None, heartbeat_timeout: float = 20.0,
                 start_timeout: float = 120.0, cancel_timeout: float = 15.0, threads: int = 0):
        self.python = str(python)
        self.threads = int(threads)     # the backend's torch threads; 0: torch's default
        self.backend_root = Path(backend_root)
        self.work_dir = Path(work_dir)
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.heartbeat_timeout = heartbeat_timeout
        self.start_timeout = start_timeout
        self.cancel_timeout = cancel_timeout
        self.garbled_lines = 0
        self._session: _Session | None = None
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._remove_stale_job_folders()

    # ---- process lifecycle

    @property
    def pid(self) -> int | None:
        return self._session.proc.pid if self._session else None

    @property
    def info(self):
        """The backend's Ready message (versions, devices, solvers) once the handshake is done."""
        return self._session.info if self._session else None

    def is_alive(self) -> bool:
        session = self._session
        return session is not None and session.alive()

    def start(self, wait: bool = True, timeout: float | None = None):
        """Start the backend unless it runs; with wait, block until it answered hello (or raise
        BackendError). Returns the Ready message when waiting."""
        with self._lock:
            session = self._session
            if session is None or not session.alive():
                failure = session.failure if session is not None else None
                if failure is not None and failure.code == ErrorCode.PROTOCOL_VERSION:
                    raise session.failure  # restarting the same mismatched backend cannot help
                self._stop_session(session, polite=False)
                session = self._session = self._spawn()
        if not wait:
            return None
        return self._wait_ready(session, self.start_timeout if timeout is None else timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the backend and free all its memory ("Release memory"): ask, then terminate."""
        with self._lock:
            session, self._session = self._session, None
        self._stop_session(session, polite=True, timeout=timeout)

    # ---- jobs

    def submit(self, vertices, faces, prompt: str, mask=None, **options) -> Job:
        """Send one animate request (starting the backend if needed) and return its Job at once.

        faces: (M, k) int array, a list of polygons, a Polygons(flat, sizes), or None.
        mask: None or per-vertex weights (0 pinned .. 1 moves fully).
        options: JOB_OPTIONS (None or absent: the model's default).
        """
        unknown = sorted(set(options) - set(JOB_OPTIONS))
        if unknown:
            raise TypeError(f"unknown animate option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(JOB_OPTIONS)}")
        session = self._session
        if session is None or not session.alive():
            self.start(wait=False)  # non-blocking: the handshake completes while the job queues
            session = self._session
        job_id = uuid.uuid4().hex[:16]
        folder = self.work_dir / "jobs" / job_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            num_vertices = arrays.write_mesh_file(folder / "mesh.npz", vertices, faces, mask)
        except SeamError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise BackendError(exc.code, exc.message) from None
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = Job(self, session, job_id, folder, num_vertices)
        with session.lock:
            session.jobs[job_id] = job
            failure = session.failure
        if failure is not None:
            job._inbox.put(self._error_message(job_id, failure))
            return job
        request = protocol.AnimateRequest(id=job_id, mesh_path=str(folder / "mesh.npz"),
                                               out_path=str(folder / "out.npz"), prompt=prompt,
                                               **options)
        self._send(session, request)
        return job

    # ---- internals

    def child_env(self) -> dict:
        env = dict(os.environ)
        # Blender's own interpreter settings must not leak into another Python installation.
        for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
            env.pop(name, None)
        extra = dict(self.extra_env)
        paths = [str(self.backend_root)] + ([extra.pop("PYTHONPATH")] if extra.get("PYTHONPATH") else [])
        env.update(extra)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONIOENCODING"] = "utf-8"
        # torch's OpenMP threads spin while they wait for each other; with another program on
        # one of 2 cores that made an Animate 18x slower (23 s against 1.3 s), sleeping threads
        # kept it at 1.5 s and cost nothing idle (benchmarks/addon_overhead_bench.py).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return env

    def _spawn(self) -> _Session:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", "backend.server", "--parent-pid", str(os.getpid())]
        if self.threads > 0:
            command += ["--threads", str(self.threads)]
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW  # no console window popping up
        else:
            kwargs["start_new_session"] = True  # Ctrl-C in Blender's terminal is not for the backend
        with open(self.log_path, "ab") as log_file:  # the child keeps its own copy of the handle
            log_file.write(f"\n==== backend start {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                           f"{' '.join(command)}\n".encode())
            log_file.flush()
            try:
                proc = subprocess.Popen(command, cwd=self.backend_root, env=self.child_env(),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                                        **kwargs)
            except OSError as exc:
                raise BackendError(ErrorCode.BACKEND_NOT_SET_UP, (
                    f"cannot start the backend with {self.python} ({exc.strerror or exc}). Open "
                    "Preferences > Add-ons > AnimateAnyMesh and run Set up backend, or choose a "
                    "Python interpreter that has torch installed.")) from None
        session = _Session(proc)
        threading.Thread(target=self._read_loop, args=(session,), name="aam-backend-reader",
                         daemon=True).start()
        self._send(session, protocol.Hello(client="animateanymesh_addon"))
        log.info("started the backend (pid %d): %s", proc.pid, " ".join(command))
        return session

    def _wait_ready(self, session: _Session, timeout: float):
        deadline = time.monotonic() + timeout
        while not session.ready.wait(0.1):
            self._check_health(session)
            if session.failure is not None:
                break
            if time.monotonic() > deadline:
                self._fail(session, BackendError(ErrorCode.BACKEND_NOT_READY, (
                    f"the backend did not answer within {timeout:.0f} s of starting. Its log may say "
                    f"why: {self.log_path}")))
                self._stop_session(session, polite=False)
                break
        if session.failure is not None:
            raise session.failure
        return session.info

    def _stop_session(self, session: _Session | None, polite: bool, timeout: float = 5.0) -> None:
        if session is None:
            return
        session.stopping = True
        proc = session.proc
        if proc.poll() is None:
            if polite:
                self._send(session, protocol.Shutdown())
            try:
                proc.stdin.close()  # EOF is a shutdown request too
            except OSError:
                pass
            try:
                proc.wait(timeout if polite else 0.5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        with session.lock:
            jobs = list(session.jobs.values())
        for job in jobs:  # we stopped it: what was still running ends as cancelled
            job._inbox.put(protocol.Cancelled(id=job.id))
        # stdout is closed by the reader thread when it sees EOF: closing it here could block on
        # the lock the reader holds inside readline().

    def _send(self, session: _Session, message) -> None:
        data = message.to_line().encode("utf-8")
        with self._send_lock:
            try:
                session.proc.stdin.write(data)
                session.proc.stdin.flush()
            except (OSError, ValueError):  # broken pipe or closed: the process is gone
                if not session.stopping:
                    self._fail(session, self._died_error())

    def _read_loop(self, session: _Session) -> None:
        proto = protocol
        stream = session.proc.stdout
        while True:
            try:
                raw = stream.readline()
            except (OSError, ValueError):
                break
            if not raw:
                break
            session.last_seen = time.monotonic()
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                message = proto.parse_line(line)
            except proto.ProtocolVersionError as exc:
                self._fail(session, BackendError(ErrorCode.PROTOCOL_VERSION, str(exc)))
                continue
            except proto.ProtocolError as exc:
                self.garbled_lines += 1
                log.warning("ignored a line from the backend that is not a protocol message: %s", exc)
                continue
            try:
                self._dispatch(session, message)
            except Exception:  # a surprise in one message must not kill the reader
                log.exception("could not handle %r from the backend", message)
        try:
            stream.close()
        except OSError:
            pass
        if not session.stopping:
            self._fail(session, self._died_error())

    def _dispatch(self, session: _Session, message) -> None:
        if isinstance(message, protocol.Heartbeat):
            return
        if isinstance(message, protocol.Ready):
            session.info = message
            session.ready.set()
            return
        job_id = getattr(message, "id", "")
        if not job_id:
            if isinstance(message, protocol.Error) and not session.ready.is_set():
                # Before the handshake an id-less error means the backend cannot work at all.
                self._fail(session, BackendError(message.code, message.message))
            else:
                log.warning("backend says: %s", getattr(message, "message", message))
            return
        with session.lock:
            job = session.jobs.get(job_id)
        if job is None:
            log.debug("message for unknown job %s ignored: %s", job_id, message.type)
            return
        job._inbox.put(message)

    def _check_health(self, session: _Session, job: Job | None = None) -> None:
        """The watchdog, run from poll() / wait(): a dead, silent or cancel-deaf backend fails."""
        if session.failure is not None or session.stopping:
            return
        if session.proc.poll() is not None:
            self._fail(session, self._died_error())
        elif time.monotonic() - session.last_seen > self.heartbeat_timeout:
            log.error("no message from the backend for %.0f s: stopping it", self.heartbeat_timeout)
            self._fail(session, BackendError(ErrorCode.BACKEND_DIED, (
                f"the backend stopped answering (nothing for {self.heartbeat_timeout:.0f} s) and was "
                f"stopped; it will restart on the next Animate. Log: {self.log_path}")))
            self._stop_session(session, polite=False)
        elif (job is not None and job._cancel_sent_at is not None and not job.finished
              and time.monotonic() - job._cancel_sent_at > self.cancel_timeout):
            # Cancel must work even when the backend is stuck in something uninterruptible
            # (loading a large model): stop the process; the next Animate starts a fresh one.
            log.warning("job %s ignored cancel for %.0f s: stopping the backend", job.id, self.cancel_timeout)
            with self._lock:
                if self._session is session:
                    self._session = None
            self._stop_session(session, polite=False)

    def _died_error(self) -> BackendError:
        cause = failure_cause(self.log_path)
        said = f" ({cause})" if cause else ""
        return BackendError(ErrorCode.BACKEND_DIED, f"the backend stopped unexpectedly{said}; it "
                            f"will restart on the next Animate. Log: {self.log_path}")

    def _error_message(self, job_id: str, error: BackendError):
        return protocol.Error(id=job_id, code=error.code, message=error.message)

    def _fail(self, session: _Session, error: BackendError) -> None:
        with session.lock:
            if session.failure is not None:
                return
            session.failure = error
            jobs = list(session.jobs.values())
        log.error("backend failure (%s): %s", error.code, error.message)
        session.ready.set()  # wake a waiting start()
        for job in jobs:
            job._inbox.put(self._error_message(job.id, error))

    def _remove_stale_job_folders(self) -> None:
        """Job folders left by a crashed session; young ones may belong to another Blender."""
        root = self.work_dir / "jobs"
        if not root.is_dir():
            return
        cutoff = time.time() - STALE_JOB_FOLDER_S
        for folder in root.iterdir():
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass
