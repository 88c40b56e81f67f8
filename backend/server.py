"""The backend process: one warm model, one job at a time, typed messages over pipes.

    python -m backend.server [--cache DIR] [--parent-pid PID]

Channels: requests arrive on stdin; protocol lines leave on the process's *original* stdout and
nothing else ever reaches it, because at startup fd 1 and sys.stdout are pointed at stderr (a
stray print, a progress bar or a C library writing to fd 1 lands in the log instead of
corrupting the channel). stderr is the log; the client redirects it to a file.

Threads:
    reader     parses requests; answers hello itself, queues animate requests, flags cancel
               and shutdown. EOF on stdin means the client is gone: stop.
    heartbeat  one Heartbeat a second (so the client can tell a dead or hung backend), and
               watches the parent process: when it dies we stop, so no orphan outlives Blender.
    main       runs the queued work in order and survives every job failure.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path

from aam_seam import limits
from aam_seam import protocol as proto
from aam_seam.arrays import read_mesh_file, write_result_file
from aam_seam.codes import ErrorCode, SeamError
from aam_seam.limits import MAX_ID_CHARS, MAX_LINE_BYTES
from aam_seam.stages import Stage

from . import __version__
from .errors import UserError
from .solvers import SOLVERS, get_solver

log = logging.getLogger("animateanymesh.server")

HEARTBEAT_INTERVAL_S = 1.0
# After a stop request, the running job has this long to notice its cancel flag (the sampler
# checks it between evaluations; model loading cannot be interrupted) before we exit anyway.
STOP_GRACE_S = 10.0
GPU_OOM_MESSAGE = "out of GPU memory: lower Tokens (num_traj) or use the CPU."
RAM_OOM_MESSAGE = ("out of memory: lower Tokens (num_traj), animate a smaller mesh, or close "
                   "other programs.")


# ----------------------------------------------------------------------------- the channel

def claim_protocol_channel():
    """Reserve the real stdout for protocol lines; route everything else that writes to fd 1
    (print, tqdm, C libraries) to stderr. Returns a binary file on the reserved descriptor."""
    sys.stdout.flush()
    reserved = os.dup(1)  # os.dup makes it non-inheritable: child processes never see it
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(reserved, "wb")


class Channel:
    """Thread-safe writer of whole protocol lines. A failed write means the client is gone."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: proto.Message) -> bool:
        data = message.to_line().encode("utf-8")
        with self._lock:
            if self.broken:
                return False
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):  # broken pipe, closed file
                self.broken = True
                return False
        return True


def read_bounded_line(stream, limit: int = MAX_LINE_BYTES) -> bytes | None:
    """The next line (b"" at EOF), or None for a line longer than `limit`, which is read to its
    end in pieces and dropped, so an endless line cannot grow the process."""
    raw = stream.readline(limit + 1)
    if len(raw) <= limit or raw.endswith(b"\n"):
        return raw
    while raw and not raw.endswith(b"\n"):
        raw = stream.readline(limit)
    return None


# ----------------------------------------------------------------------------- request files

def checked_out_path(path: str) -> Path:
    if not path:
        raise UserError("the request names no out_path for the result.", code=ErrorCode.BAD_REQUEST)
    out = Path(path)
    if not out.parent.is_dir():
        raise UserError(f"the result folder {out.parent} does not exist; animate again.",
                        code=ErrorCode.BAD_REQUEST)
    return out


# ----------------------------------------------------------------------------- warm model

class ModelCache:
    """The one loaded model, kept between requests; another model or device replaces it."""

    def __init__(self):
        self.key = None
        self.model = None

    def get(self, name: str, device, cache: str | None, progress):
        from .model_folder import load_model
        from .model_manager import resolve_model

        directory = resolve_model(name, cache).resolve()
        key = (str(directory), str(device), _directory_stamp(directory))
        if key == self.key:
            return self.model
        self.release()  # two models at once may not fit: free the old one first
        progress(Stage.LOAD, 0, 1)
        self.model = load_model(directory, device)
        self.key = key
        progress(Stage.LOAD, 1, 1)
        log.info("loaded model %s on %s", directory, device)
        return self.model

    def release(self) -> bool:
        had = self.model is not None
        self.model = None
        self.key = None
        free_memory()
        return had


def _directory_stamp(directory: Path) -> int:
    """Newest modification time in the model folder, so re-importing into it reloads."""
    return max((p.stat().st_mtime_ns for p in directory.iterdir() if p.is_file()), default=0)


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def available_devices() -> list[str]:
    import torch

    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def classify_failure(exc: BaseException) -> tuple[str, str]:
    """(code, one-line message) for an exception that is not a UserError."""
    import torch

    text = str(exc)
    gpu_oom = getattr(torch.cuda, "OutOfMemoryError", ())
    if (gpu_oom and isinstance(exc, gpu_oom)) or "CUDA out of memory" in text:
        return ErrorCode.OUT_OF_MEMORY, GPU_OOM_MESSAGE
    if isinstance(exc, MemoryError) or "can't allocate memory" in text:
        return ErrorCode.OUT_OF_MEMORY, RAM_OOM_MESSAGE
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    summary = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return ErrorCode.INTERNAL, (f"internal error in the backend ({summary}); the details are in the "
                                "backend log.")


# ----------------------------------------------------------------------------- the server

class Server:
    def __init__(self, channel: Channel, *, cache: str | None = None, parent_pid: int | None = None,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL_S, stop_grace: float = STOP_GRACE_S):
        self.channel = channel
        self.cache = cache
        # The parent we were started by; if getppid() changes we were orphaned. --parent-pid
        # names the client when a launcher (a venv shim, `uv run`) sits in between.
        self.original_ppid = os.getppid()
        self.client_pid = parent_pid
        self.heartbeat_interval = heartbeat_interval
        self.stop_grace = stop_grace
        self.models = ModelCache()
        self.work: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.stop_reason = ""
        self._stop_time = 0.0
        self._lock = threading.Lock()          # guards the job bookkeeping below
        self.current_id: str | None = None
        self.cancel_flag = threading.Event()
        self.queued_ids: set[str] = set()
        self.cancelled_ids: set[str] = set()

    # ---- lifecycle

    def start_heartbeat(self) -> None:
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()

    def serve(self, stdin=None) -> int:
        """Run until shutdown, EOF on stdin, a broken channel or the parent's death."""
        stdin = stdin if stdin is not None else sys.stdin.buffer
        threading.Thread(target=self._read_loop, args=(stdin,), name="reader", daemon=True).start()
        while True:
            item = self.work.get()
            if item is None:
                break
            self.run_job(item)
        self.models.release()
        log.info("backend stopped: %s", self.stop_reason)
        return 0

    def request_stop(self, reason: str) -> None:
        with self._lock:
            if self.stopping.is_set():
                return
            self.stop_reason = reason
            self._stop_time = time.monotonic()
            self.stopping.set()
            self.cancel_flag.set()  # the running job stops at its next check
        log.info("stopping: %s", reason)
        self.work.put(None)

    def _parent_gone(self) -> bool:
        if os.name == "nt":
            # Windows does not re-parent orphans, and os.kill(pid, 0) would *terminate* the pid
            # there; EOF on stdin (the pipe closes when Blender dies) covers Windows.
            return False
        if os.getppid() != self.original_ppid:
            return True
        if self.client_pid:
            try:
                os.kill(self.client_pid, 0)  # signal 0: only asks whether the pid exists
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return False

    def _heartbeat_loop(self) -> None:
        while True:
            time.sleep(self.heartbeat_interval)
            if self.stopping.is_set():
                if time.monotonic() - self._stop_time > self.stop_grace:
                    log.warning("the running job did not stop within %.0f s; exiting now", self.stop_grace)
                    logging.shutdown()
                    os._exit(0)
                continue
            if self._parent_gone():
                self.request_stop("the parent process exited")
            elif not self.channel.send(proto.Heartbeat(busy=self.current_id is not None)):
                self.request_stop("the client closed the protocol channel")

    # ---- requests

    def _read_loop(self, stdin) -> None:
        for raw in iter(lambda: read_bounded_line(stdin), b""):
            if raw is None:
                self._refuse(f"a request line longer than {MAX_LINE_BYTES} bytes was dropped unread.")
                continue
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                message = proto.parse_line(line)
            except proto.ProtocolVersionError as exc:
                log.error("%s", exc)
                self.channel.send(proto.Error(code=ErrorCode.PROTOCOL_VERSION, message=str(exc)))
                continue
            except proto.ProtocolError as exc:
                self._refuse(str(exc), exc.id)
                continue
            try:
                self.handle(message)
            except Exception as exc:  # one message must never cost the reader: answer and go on
                log.error("handling a %s message failed:\n%s", message.type, traceback.format_exc())
                self._refuse(f"the backend could not handle this {message.type} message "
                             f"({type(exc).__name__}: {exc}).", getattr(message, "id", ""))
            if self.stopping.is_set():
                return
        self.request_stop("stdin closed (the client is gone)")

    def _refuse(self, text: str, job_id: str = "") -> None:
        log.warning("refused a request: %s", text)
        self.channel.send(proto.Error(id=job_id, code=ErrorCode.BAD_MESSAGE, message=text))

    def handle(self, message: proto.Message) -> None:
        if isinstance(message, proto.Hello):
            import torch

            log.info("hello from %s", message.client or "a client")
            self.channel.send(proto.Ready(backend_version=__version__, torch_version=torch.__version__,
                                          devices=available_devices(),
                                          solvers=[s.as_dict() for s in SOLVERS.values()]))
        elif isinstance(message, proto.AnimateRequest):
            if not message.id or len(message.id) > MAX_ID_CHARS:
                self.channel.send(proto.Error(code=ErrorCode.BAD_REQUEST, message=(
                    f"an animate request needs an id of 1 to {MAX_ID_CHARS} characters.")))
                return
            try:
                limits.check_request_values(seed=message.seed, steps=message.steps,
                                            num_traj=message.num_traj, guidance=message.guidance,
                                            prompt=message.prompt, frames=message.frames,
                                            strength=message.strength, then=message.then,
                                            loop=message.loop, variations=message.variations,
                                            mask_falloff=message.mask_falloff,
                                            quality=message.quality, keep_shape=message.keep_shape)
            except SeamError as exc:
                self.channel.send(proto.Error(id=message.id, code=exc.code, message=exc.message))
                return
            with self._lock:
                self.queued_ids.add(message.id)
            self.work.put(message)
        elif isinstance(message, proto.Cancel):
            with self._lock:
                if message.id and message.id == self.current_id:
                    self.cancel_flag.set()
                elif message.id in self.queued_ids:
                    self.cancelled_ids.add(message.id)
                else:
                    log.info("cancel for %r: no such job (already finished?)", message.id)
        elif isinstance(message, proto.Shutdown):
            self.request_stop("shutdown requested")
        else:
            log.warning("ignored a %s message: it only travels from the backend to the client", message.type)

    # ---- jobs

    def run_job(self, request: proto.AnimateRequest) -> None:
        with self._lock:
            self.queued_ids.discard(request.id)
            self.current_id = request.id
            self.cancel_flag.clear()
            if request.id in self.cancelled_ids or self.stopping.is_set():
                self.cancelled_ids.discard(request.id)
                self.cancel_flag.set()
        from .sampling import Cancelled

        clock = time.perf_counter()
        try:
            if self.cancel_flag.is_set():
                raise Cancelled("cancelled before it started")
            reply = self.animate(request)
        except Cancelled:
            log.info("job %s cancelled after %.1f s", request.id, time.perf_counter() - clock)
            reply = proto.Cancelled(id=request.id)
        except (UserError, SeamError) as exc:
            log.info("job %s: %s (%s)", request.id, exc, exc.code)
            reply = proto.Error(id=request.id, code=exc.code, message=str(exc))
        except Exception as exc:  # a bug or an exhausted device: report it and keep serving
            log.error("job %s failed:\n%s", request.id, traceback.format_exc())
            code, text = classify_failure(exc)
            if code == ErrorCode.OUT_OF_MEMORY:
                free_memory()
            reply = proto.Error(id=request.id, code=code, message=text)
        finally:
            with self._lock:
                self.current_id = None
                self.cancel_flag.clear()
        self.channel.send(reply)

    def animate(self, request: proto.AnimateRequest) -> proto.Result:
        from .mesh import validate_mesh
        from .models.text import check_prompt
        from .pipeline import animate, pick_device
        from .sampling import Cancelled

        clock = time.perf_counter()
        job_id = request.id

        def progress(stage: str, done: int, total: int) -> None:
            self.channel.send(proto.Progress(id=job_id, stage=str(stage), step=int(done), total=int(total)))

        def cancelled() -> bool:
            return self.cancel_flag.is_set()

        # Cheap checks first: a bad prompt or mesh should not wait for a model to load.
        check_prompt(request.prompt, None)  # the chained ones were judged at the door (limits)
        if request.solver:
            get_solver(request.solver)
        vertices, faces, mask = read_mesh_file(request.mesh_path)
        validate_mesh(vertices, faces)
        limits.check_mask(mask, len(vertices))
        out = checked_out_path(request.out_path)
        device = pick_device(request.device)
        model = self.models.get(request.model, device, self.cache, progress)
        if cancelled():
            raise Cancelled("cancelled while the model loaded")
        result = animate(vertices, faces, request.prompt, model=model, seed=request.seed,
                         guidance=request.guidance, steps=request.steps, solver=request.solver,
                         quality=request.quality,
                         num_traj=request.num_traj, device=str(device), precision=request.precision,
                         frames=request.frames, strength=request.strength, then=request.then,
                         loop=request.loop, mask=mask, mask_falloff=request.mask_falloff,
                         variations=request.variations, keep_shape=request.keep_shape,
                         progress=progress, cancel=cancelled)
        for text in result.warnings:
            self.channel.send(proto.Notice(id=job_id, message=text))
        progress(Stage.WRITE, 0, 1)
        write_result_file(out, result.takes, result.seeds)
        progress(Stage.WRITE, 1, 1)
        seconds = time.perf_counter() - clock
        log.info("job %s: %d frames x %d vertices in %.2f s (%s)", job_id, result.frames.shape[0],
                 result.frames.shape[1], seconds,
                 ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
        return proto.Result(id=job_id, out_path=str(out), seed=int(result.seed), seeds=result.seeds,
                            frames=int(result.frames.shape[0]), vertices=int(result.frames.shape[1]),
                            seconds=round(seconds, 3))


# ----------------------------------------------------------------------------- entry point

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--cache", default=None,
                        help="model cache folder (default $ANIMATEANYMESH_HOME or ~/.cache/animateanymesh)")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process (the client) is gone")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch's intra-op threads (0: torch's default, one per core)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until told to stop. Used by `python -m backend.server` (and a `serve` subcommand)."""
    channel = Channel(claim_protocol_channel())
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s [server %(process)d] %(message)s")
    server = Server(channel, cache=args.cache, parent_pid=args.parent_pid)
    # Heartbeats start before the slow torch import so the client can tell "starting" from "dead".
    server.start_heartbeat()
    try:
        import torch

        torch.set_flush_denormal(True)  # denormals slow CPU matmuls by orders of magnitude
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        from . import pipeline  # noqa: F401 - pay the import cost before the first request
    except Exception as exc:
        log.error("cannot import the backend's libraries:\n%s", traceback.format_exc())
        channel.send(proto.Error(code=ErrorCode.BACKEND_BROKEN, message=(
            f"the backend's Python environment is broken ({type(exc).__name__}: {exc}); "
            "run Set up backend in the add-on preferences again.")))
        return 1
    log.info("backend %s ready (torch %s, pid %d, %d threads)", __version__, torch.__version__,
             os.getpid(), torch.get_num_threads())
    try:
        return server.serve()
    except KeyboardInterrupt:  # only when run by hand in a terminal; the client starts it detached
        log.info("interrupted")
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m backend.server", description="AnimateAnyMesh backend process (speaks the "
        "line protocol of aam_seam/protocol.py on stdin/stdout; logs to stderr)"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
