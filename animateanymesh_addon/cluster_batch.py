"""Animate Collection on a Ray cluster: the queue handed to `python -m backend batch --ray` at once.

The local runner (controller.BatchRun) sends one object at a time to the warm backend. Here every
queued object's mesh is written to a batch folder with a jobs file, one `python -m backend batch
--ray [ADDRESS] --events` process runs them on the cluster's workers in parallel (a worker that
dies costs its job one attempt there), and each result is written back to its object on
Blender's main thread as its event arrives, so a long batch keeps what it finished. Cancel stops
the process (SIGTERM, which it takes as Ctrl-C: it records the cancelled jobs and stops the workers it started);
objects that did not finish stay queued for Resume.
"""

from __future__ import annotations

import os
import queue as queue_module
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import session
from .controller import (AnimateError, AnimateRun, build_requests, item_options, split_result, write_results,
                         write_variations)
from .seam import ErrorCode, batch

STDERR_TAIL_BYTES = 8192


@dataclass
class ClusterSettings:
    address: str = ""          # "": Ray starts on the machine running the batch
    workers: int = 0           # 0: one per GPU, else one per cpus_per_worker CPUs
    cpus_per_worker: int = 1


class ClusterBatchRun:
    kind = "batch"

    def __init__(self, queue, options, cluster: ClusterSettings, save=None, client_factory=None):
        self.queue = queue
        self.options = options
        self.cluster = cluster
        self.state = "pending"
        self.error: tuple[str, str] | None = None
        self.written = 0
        self.infos: list = []
        self.warnings: list[str] = []
        self.job = None                 # what the panel's progress reads through .stage
        self._save = save or (lambda: None)
        self._client_factory = client_factory or session.client
        self._events: queue_module.Queue = queue_module.Queue()
        self._jobs: dict[str, tuple] = {}     # job id -> (item, request, options)
        self._proc: subprocess.Popen | None = None
        self._cancel = threading.Event()
        self._cancel_sent = False
        self._folder: Path | None = None
        self._last = "starting"

    # ---- what the panel shows

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def fraction(self) -> float:
        counts = self.queue.counts()
        settled = counts["done"] + counts["failed"] + counts["cancelled"]
        return min(settled / (len(self.queue.items) or 1), 1.0)

    @property
    def text(self) -> str:
        if self.state == "running":
            counts = self.queue.counts()
            return (f"Ray batch: {counts['done']} done, {counts['running']} running, "
                    f"{counts['queued']} queued, {counts['failed']} failed ({self._last})")
        if self.state == "error":
            return f"Batch stopped: {self.error[1]}"
        return f"Batch {self.state}"

    @property
    def stage(self) -> str:
        return "cluster"

    # ---- running

    def start(self) -> "ClusterBatchRun":
        self.state = "running"
        self.queue.interrupted()
        try:
            client = self._client_factory()
            self._folder = Path(client.work_dir) / "batches" / time.strftime("%Y%m%d-%H%M%S")
            self._folder.mkdir(parents=True, exist_ok=True)
            jobs_path = self._write_jobs()
        except AnimateError as exc:
            self._stop_with(exc.code, exc.message)
            return self
        except OSError as exc:
            self._stop_with(ErrorCode.BAD_INPUT, f"cannot write the batch folder ({exc.strerror or exc}).")
            return self
        except Exception as exc:  # BackendError (not set up) and its kin carry a code and a fix
            self._stop_with(getattr(exc, "code", ErrorCode.BACKEND_NOT_SET_UP), str(exc))
            return self
        self._save()
        if not self._jobs:
            self.state = "done"
            return self
        self._launch(client, jobs_path)
        return self

    def _write_jobs(self) -> Path:
        lines = []
        for number, item in enumerate(self.queue.items):
            if item.status != "queued":
                continue
            obj = bpy.data.objects.get(item.object_name)
            try:
                if obj is None:
                    raise AnimateError(ErrorCode.OBJECT_GONE, f"object '{item.object_name}' no longer exists.")
                options = item_options(self.options, item)
                options.check()
                (request,) = build_requests([obj], together=True, mask_group=options.mask_group)
            except AnimateError as exc:
                self.queue.start(item)
                self.queue.fail(item, exc.code, exc.message, retry=False)
                continue
            job_id = f"{number:05d}"
            mesh = self._folder / f"{job_id}.npz"
            batch.write_job_mesh(mesh, request.vertices, request.polygons, request.mask)
            # every animate option travels under its own name; model and device are the batch's
            sent = {k: v for k, v in options.job_options().items() if k in batch.OPTION_NAMES}
            if request.mask is not None:
                sent["mask"] = f"{mesh}:mask"
            lines.append(batch.job_line(job_id, mesh, item.prompt,
                                        self._folder / "out" / f"{job_id}.npz", **sent))
            self._jobs[job_id] = (item, request, options)
        path = self._folder / "jobs.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def _launch(self, client, jobs_path: Path) -> None:
        command = [client.python, "-m", "backend", "batch", str(jobs_path), "--events",
                   "--model", self.options.model, "--device", self.options.device,
                   "--attempts", str(self.queue.max_attempts),
                   "--ray", *([self.cluster.address] if self.cluster.address else []),
                   "--workers", str(self.cluster.workers),
                   "--cpus-per-worker", str(self.cluster.cpus_per_worker)]
        kwargs = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" \
            else {"start_new_session": True}
        self._stderr_path = self._folder / "batch.log"
        with open(self._stderr_path, "wb") as stderr:
            try:
                self._proc = subprocess.Popen(command, cwd=client.backend_root, env=client.child_env(),
                                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=stderr, **kwargs)
            except OSError as exc:
                self._stop_with(ErrorCode.BACKEND_NOT_SET_UP, f"cannot start {client.python} "
                                f"({exc.strerror or exc}); run Set up backend in the preferences.")
                return
        threading.Thread(target=self._read_events, name="aam-ray-batch", daemon=True).start()
        self._last = f"{len(self._jobs)} jobs sent to Ray"

    def _read_events(self) -> None:
        for raw in self._proc.stdout:
            event = batch.parse_event(raw.decode("utf-8", errors="replace"))
            if event is not None:
                self._events.put(event)
        self._events.put(None)          # the process closed its output: it is ending

    def request_cancel(self) -> None:
        self._cancel.set()

    def poll(self) -> bool:
        if self.finished:
            return True
        if self._cancel.is_set() and not self._cancel_sent:
            self._cancel_sent = True
            self.queue.cancel_all()
            self._save()
            self._interrupt()
        while True:
            try:
                event = self._events.get_nowait()
            except queue_module.Empty:
                return False
            if event is None:
                self._ended()
                return True
            self._apply(event)

    run_blocking = AnimateRun.run_blocking

    def abandon(self) -> None:
        self._cancel.set()
        self._interrupt()
        self.queue.interrupted()
        self._save()
        if not self.finished:
            self.state = "cancelled"

    # ---- events

    def _apply(self, event: dict) -> None:
        kind, entry = event["event"], self._jobs.get(str(event.get("job", "")))
        if kind in ("cluster", "worker_died"):
            self._last = event.get("message", kind)
            if kind == "worker_died":
                self.warnings.append(f"a Ray worker died: {event.get('message', '')}")
            return
        if entry is None:
            return
        item, request, options = entry
        if kind == "started" and item.status == "queued":
            self.queue.start(item)
            self._last = f"'{item.object_name}' on {event.get('worker', 'a worker')}"
        elif kind == "done" and item.status == "running":
            self._write(item, request, options, event)
        elif kind == "failed" and item.status == "running":
            self.queue.fail(item, event.get("code", ErrorCode.INTERNAL), event.get("message", ""),
                            retry=False)
        self._save()

    def _write(self, item, request, options, event: dict) -> None:
        try:
            takes = []
            for path in event["outputs"]:
                with np.load(path) as data:
                    takes.append(split_result(request, np.asarray(data["frames"], dtype=np.float32)))
            seeds = [int(s) for s in event["seeds"]]
            if len(takes) > 1:
                infos = write_variations([request], takes, seeds, options)
            else:
                infos = write_results(takes[0], options, seeds[0])
        except AnimateError as exc:
            self.queue.fail(item, exc.code, exc.message, retry=False)
            return
        except (OSError, KeyError, ValueError) as exc:
            self.queue.fail(item, ErrorCode.BAD_RESULT, f"the result of '{item.object_name}' "
                            f"cannot be read ({exc}).", retry=False)
            return
        self.warnings += [f"{item.object_name}: {w}"
                          for w in event.get("warnings", []) + [w for i in infos for w in i.warnings]]
        self.queue.done(item, seeds[0], event.get("seconds"))
        self.written += 1
        self.infos += infos
        self._last = f"wrote '{item.object_name}'"

    def _ended(self) -> None:
        code = self._proc.wait()
        unfinished = [item for item, _, _ in self._jobs.values() if item.status in ("queued", "running")]
        if self._cancel.is_set() or code == 130:
            for item in unfinished:
                self.queue.cancel(item, "cancelled while the batch ran")
            self.state = "cancelled"
        elif code == 2 or unfinished:
            message = self._error_line() or f"the Ray batch stopped (exit status {code})."
            if "requirements-ray.txt" in message:
                message = ("Ray is not installed in the backend's environment: with Batches Run On "
                           "set to Ray Cluster, run Set up Backend (Preferences > Add-ons > "
                           "AnimateAnyMesh) again, which installs it.")
            for item in unfinished:       # not the objects' fault: Resume runs them again
                self.queue.requeue(item, ErrorCode.BACKEND_DIED, message)
            self.state, self.error = "error", (ErrorCode.BACKEND_DIED.value, message)
        else:
            self.state = "done"
        self._save()

    def _error_line(self) -> str:
        try:
            with open(self._stderr_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(fh.tell() - STDERR_TAIL_BYTES, 0))
                lines = fh.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
        return errors[-1] if errors else ""

    def _interrupt(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                proc.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                proc.send_signal(signal.SIGTERM)   # the batch treats it as Ctrl-C
        except OSError:
            pass

    def _stop_with(self, code, message: str) -> None:
        self.state, self.error = "error", (str(code), message)
        for item, _, _ in self._jobs.values():
            if item.status == "queued":
                self.queue.requeue(item, code, message)
        self._save()

