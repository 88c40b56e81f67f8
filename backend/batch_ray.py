"""Batches on a Ray cluster: one actor per worker, each keeping one warm model.

Ray is an optional extra (requirements-ray.txt). The driver keeps every worker busy with one job
at a time and writes what comes back (batch_run.Dispatcher). A worker that dies (its process
killed, its node lost, out of memory) costs its job one attempt: the job goes back to the queue
and a fresh worker takes the dead one's place, so every job finishes once or fails with a reason.
Workers get the backend's code from this process (py_modules) when the cluster is remote, and
from PYTHONPATH on a cluster this process starts itself.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict
from pathlib import Path

from aam_seam.codes import ErrorCode

from .batch_run import Animator, BatchSettings, Dispatcher, Payload, stop_on_signals
from .errors import UserError

ROOT = Path(__file__).resolve().parents[1]
REPLACEMENTS_PER_WORKER = 3   # fresh workers started for each one asked, before giving up
WAIT_S = 0.5


def import_ray():
    # Ray's C++ core logs its connection retries on stderr; the error that follows says it all
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray, which is an optional extra: install it with "
                        f"`pip install -r {ROOT / 'requirements-ray.txt'}` (into the backend's "
                        "environment), or run the batch without --ray.") from None
    return ray


class RayAnimator:
    """The actor: an Animator, with its construction failure kept instead of killing it."""

    def __init__(self, settings: dict):
        self.error = None
        try:
            self.animator = Animator(**settings)
        except UserError as exc:
            self.error = str(exc)

    def where(self) -> dict:
        import torch

        return {"pid": os.getpid(), "host": socket.gethostname(), "error": self.error,
                "device": str(self.animator.device) if self.error is None else "",
                "threads": torch.get_num_threads()}

    def run(self, payload: Payload) -> dict:
        if self.error is not None:
            return {"error": [ErrorCode.MODEL_NOT_FOUND.value, self.error], "retryable": False}
        return self.animator.run(payload)


def start_ray(ray, address: str | None) -> bool:
    """Connect to the cluster at `address`, or start one on this machine (None). Returns True
    when this process started it (and so must stop it)."""
    if address:
        env = {"py_modules": [str(ROOT / "backend"), str(ROOT / "aam_seam")],
               "env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}
    else:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {"env_vars": {"PYTHONPATH": path, "OMP_WAIT_POLICY": "PASSIVE"}}
    if address:
        check_reachable(address)
    try:
        ray.init(address=address or None, runtime_env=env, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR",
                 **({} if address else {"num_cpus": os.cpu_count() or 1}))
        stop_on_signals()
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot reach the Ray cluster at {address} ({first}); check the address "
                        "(ray://HOST:10001 or HOST:6379, 'auto' for this machine's running cluster); a "
                        "cluster with token authentication (Ray's default since 2.59) needs "
                        "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token) "
                        "here too. Without an address, Ray starts on this machine.") from None
    return not address


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that does not answer fails in seconds, with the fix; Ray
    itself retries for minutes before it gives up."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"the Ray address {address!r} is not HOST:PORT; use HOST:6379, "
                        "ray://HOST:10001 or auto.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check "
                        "that it runs (ray status on its head node) and that this machine may "
                        "connect to that port, or leave the address out to start Ray here.") from None


def worker_shape(ray, settings: BatchSettings, workers: int, cpus_per_worker: int,
                 jobs: int) -> tuple[int, dict, str]:
    """How many workers, the resources each asks for, and the device each runs on."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus and settings.device in ("auto", "cuda"):
        count, ask, device = workers or gpus, {"num_cpus": 1, "num_gpus": 1}, "cuda"
    else:
        per = max(1, int(cpus_per_worker))
        count, ask = workers or max(1, cpus // per), {"num_cpus": per}
        device = "cpu" if settings.device == "auto" else settings.device
    return max(1, min(count, jobs)), ask, device


class Worker:
    def __init__(self, number: int, handle, ready):
        self.number, self.handle, self.ready = number, handle, ready
        self.info: dict = {}
        self.job: str | None = None

    @property
    def name(self) -> str:
        return f"worker {self.number} ({self.info.get('host', '?')} pid {self.info.get('pid', '?')})"


def run_on_ray(dispatcher: Dispatcher, settings: BatchSettings, address: str | None = None,
               workers: int = 0, cpus_per_worker: int = 1) -> None:
    ray = import_ray()
    from ray.exceptions import RayActorError, RayError

    status = dispatcher.status
    if not status.pending():
        return
    owned = start_ray(ray, address)
    actor_class = ray.remote(max_restarts=0, max_task_retries=0)(RayAnimator)
    count, ask, device = worker_shape(ray, settings, workers, cpus_per_worker, len(status.pending()))
    threads = settings.threads or int(ask["num_cpus"])
    actor_settings = asdict(BatchSettings(**{**asdict(settings), "device": device, "threads": threads}))
    actor_settings.pop("max_attempts")
    numbers = iter(range(1, 10**9))
    spares = count * REPLACEMENTS_PER_WORKER

    def launch() -> Worker:
        handle = actor_class.options(**ask).remote(actor_settings)
        return Worker(next(numbers), handle, handle.where.remote())

    def replace_dead(worker: Worker, exc: BaseException) -> None:
        nonlocal spares
        dispatcher.report({"event": "worker_died", "worker": worker.name, "message": _first_line(exc)})
        if spares > 0:
            spares -= 1
            fresh = launch()
            warming[fresh.ready] = fresh

    warming = {w.ready: w for w in (launch() for _ in range(count))}
    idle: list[Worker] = []
    running: dict = {}          # ObjectRef -> Worker
    dispatcher.report({"event": "cluster", "message": f"{count} Ray worker(s), {ask}, device {device}",
                       "workers": count})
    try:
        while True:
            queued = [job for job in status.pending() if status.items[job.id].state == "queued"]
            while idle and queued:
                job = queued.pop(0)
                payload = dispatcher.payloads.get(job.id) or dispatcher.prepare(job)
                if payload is None:
                    continue
                worker = idle.pop(0)
                worker.job = job.id
                running[worker.handle.run.remote(payload)] = worker
                dispatcher.start(job.id, worker.name, pid=worker.info.get("pid"),
                                 host=worker.info.get("host"))
            if not running and not queued and not status.pending():
                return
            if not running and not warming:
                for job in status.pending():
                    dispatcher.fail(job.id, ErrorCode.BACKEND_DIED.value, "every Ray worker died "
                                    "and no more could be started; see the Ray logs (ray logs) and "
                                    "run the batch again to retry the rest.", retryable=False)
                return
            ready, _ = ray.wait([*running, *warming], num_returns=1, timeout=WAIT_S)
            for ref in ready:
                if ref in warming:
                    worker = warming.pop(ref)
                    try:
                        worker.info = ray.get(ref)
                    except RayError as exc:
                        replace_dead(worker, exc)
                        continue
                    if worker.info["error"]:
                        raise UserError(f"the Ray workers cannot load the model: {worker.info['error']}")
                    idle.append(worker)
                    continue
                worker = running.pop(ref)
                job_id, worker.job = worker.job, None
                try:
                    answer = ray.get(ref)
                except RayActorError as exc:
                    dispatcher.finish(job_id, {"error": [ErrorCode.BACKEND_DIED.value,
                                                         f"{worker.name} died ({_first_line(exc)})"],
                                               "retryable": True}, worker.name)
                    replace_dead(worker, exc)
                    continue
                dispatcher.finish(job_id, answer, worker.name)
                idle.append(worker)
    finally:
        for worker in [*idle, *running.values(), *warming.values()]:
            ray.kill(worker.handle, no_restart=True)
        if owned:
            ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return type(exc).__name__
