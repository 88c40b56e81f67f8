"""Running a batch of animate jobs: on this machine, one after another with one warm model, or on
a Ray cluster (batch_ray.py) with one warm model per worker.

The driver (this process) reads each job's mesh and mask, hands the arrays to a worker, and
writes what comes back, each output whole or not at all. Workers never touch the job's files, so
a cluster needs no shared disk. A job whose worker died or failed inside goes back to the queue
until it has used its attempts; a job whose input is wrong fails at once, and the others go on.
Every change is saved to the status file, and every step is reported as an event: a line for
people on stderr, and with `events` a JSON object per line for programs (the Blender add-on).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aam_seam.arrays import save_npz_atomically
from aam_seam.codes import RETRYABLE, ErrorCode

from .batch_jobs import BatchJob, BatchStatus, take_paths
from .errors import UserError

EventFn = Callable[[dict], None]


@dataclass
class Payload:
    """What a worker needs for one job: arrays, not paths."""
    id: str
    vertices: np.ndarray
    faces: object
    prompt: str
    options: dict
    mask: np.ndarray | None = None


def load_payload(job: BatchJob) -> Payload:
    """The job's mesh and mask read from disk (UserError when they cannot be used)."""
    from .mesh_io import load_mesh, load_weights

    vertices, faces = load_mesh(job.mesh)
    options = {k: v for k, v in job.options.items() if k not in ("mask", "repeat")}
    options["then"] = job.then
    mask = load_weights(job.options["mask"]) if job.options.get("mask") else None
    return Payload(job.id, vertices, faces, job.prompt, options, mask)


class Animator:
    """One warm model and the jobs it runs; the same on this machine and on a Ray worker.

    `run` never raises for a job's own failure: it returns {"error": [code, message],
    "retryable": bool}, so a cluster worker reports a bad mesh instead of dying of it.
    """

    def __init__(self, model: str, cache: str | None = None, device: str = "auto",
                 precision: str = "fp32", threads: int = 0):
        import torch

        from .denormals import flush_denormals
        from .pipeline import pick_device
        from .server import ModelCache

        flush_denormals()
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = pick_device(None if device == "auto" else device)
        self.precision = precision
        self.cache = cache
        self.model_name = model
        self.models = ModelCache()
        self.models.get(model, self.device, cache, lambda *a: None)  # warm before the first job

    def run(self, payload: Payload) -> dict:
        from .pipeline import animate
        from .server import classify_failure

        clock = time.perf_counter()
        try:
            model = self.models.get(self.model_name, self.device, self.cache, lambda *a: None)
            result = animate(payload.vertices, payload.faces, payload.prompt, model=model,
                             device=str(self.device), precision=self.precision, mask=payload.mask,
                             **payload.options)
        except UserError as exc:
            return {"error": [str(exc.code), str(exc)], "retryable": False}
        except Exception as exc:  # noqa: BLE001 - a job's failure is reported, never the worker's end
            code, message = classify_failure(exc)
            return {"error": [str(code), message], "retryable": code in RETRYABLE}
        return {"takes": np.asarray(result.takes, dtype=np.float32), "seeds": list(result.seeds),
                "warnings": list(result.warnings), "keep_shape": result.keep_shape,
                "seconds": time.perf_counter() - clock}


def write_takes(out: Path, takes, seeds, faces, prompt: str, then: list[str], loop: str | None,
                keep_shape: str = "") -> list[Path]:
    """Each take as its own .npz (OUT, or OUT_1 .. OUT_K for several), written atomically, in the
    format `python -m backend animate` writes."""
    from .mesh import triangulate

    triangles = triangulate(faces)
    written = []
    for path, clip, seed in zip(take_paths(out, len(seeds)), takes, seeds):
        try:
            save_npz_atomically(path, compress=True, frames=clip, faces=triangles,
                                prompt=np.array(prompt), then=np.array(then, dtype=str),
                                loop=np.array(loop or ""), seed=np.array(seed, dtype=np.int64),
                                keep_shape=np.array(keep_shape))
        except OSError as exc:
            raise UserError(f"could not write {path} ({exc.strerror or exc}); an earlier file there is "
                            "left as it was. Free some space or choose another path.") from None
        written.append(path)
    return written


class Reporter:
    """Events to stderr for people and, optionally, as JSON lines to stdout for programs."""

    def __init__(self, total: int, json_lines: bool = False, listener: EventFn | None = None,
                 quiet: bool = False):
        self.total = total
        self.json_lines = json_lines
        self.listener = listener
        self.quiet = quiet
        self.finished = 0

    def __call__(self, event: dict) -> None:
        if event["event"] in ("done", "failed"):
            self.finished += 1
        if self.listener is not None:
            self.listener(event)
        if self.json_lines:
            print(json.dumps(event), flush=True)
        if not self.quiet:
            print(self.describe(event), file=sys.stderr, flush=True)

    def describe(self, event: dict) -> str:
        kind, job = event["event"], event.get("job", "")
        where = f" on {event['worker']}" if event.get("worker") else ""
        count = f"[{self.finished}/{self.total}]"
        if kind == "started":
            return f"{count} {job}: started{where} (attempt {event['attempt']})"
        if kind == "done":
            return (f"{count} {job}: wrote {', '.join(Path(p).name for p in event['outputs'])} "
                    f"(seed {', '.join(map(str, event['seeds']))}, {event['seconds']:.1f} s{where})")
        if kind == "retry":
            return f"{count} {job}: {event['message']}; it runs again"
        if kind == "failed":
            return f"{count} {job}: failed: {event['message']}"
        if kind == "worker_died":
            return f"{event['worker']} died: {event['message']}"
        return f"{kind}: {event.get('message', '')}"


class Dispatcher:
    """The bookkeeping both runners share: start, finish, fail or retry a job, report each."""

    def __init__(self, status: BatchStatus, report: EventFn):
        self.status = status
        self.report = report
        self.payloads: dict[str, Payload] = {}

    def prepare(self, job: BatchJob) -> Payload | None:
        """The job's payload, or None after failing the job when its input cannot be read."""
        try:
            self.status.jobs[job.id].out.parent.mkdir(parents=True, exist_ok=True)
            payload = load_payload(job)
        except UserError as exc:
            self.fail(job.id, str(exc.code), str(exc), retryable=False)
            return None
        except OSError as exc:
            reason = exc.strerror or exc
            self.fail(job.id, ErrorCode.BAD_INPUT.value, f"cannot use {job.out.parent} ({reason}); "
                      "choose a writable folder for out.", retryable=False)
            return None
        self.payloads[job.id] = payload
        return payload

    def start(self, job_id: str, worker: str = "", **where) -> None:
        item = self.status.started(job_id, worker)
        self.report({"event": "started", "job": job_id, "worker": worker, "attempt": item.attempts,
                     **where})

    def finish(self, job_id: str, answer: dict, worker: str = "") -> None:
        if "error" in answer:
            self.fail(job_id, *answer["error"], retryable=bool(answer.get("retryable")), worker=worker)
            return
        job, payload = self.status.jobs[job_id], self.payloads.pop(job_id)
        try:
            outputs = write_takes(job.out, answer["takes"], answer["seeds"], payload.faces, job.prompt,
                                  job.then, job.options.get("loop"), answer.get("keep_shape", ""))
        except UserError as exc:
            self.fail(job_id, str(exc.code), str(exc), retryable=False, worker=worker)
            return
        self.status.done(job_id, outputs, answer["seeds"], answer["seconds"], answer["warnings"])
        self.report({"event": "done", "job": job_id, "worker": worker,
                     "outputs": [str(p) for p in outputs], "seeds": answer["seeds"],
                     "seconds": round(answer["seconds"], 3), "warnings": answer["warnings"]})

    def fail(self, job_id: str, code: str, message: str, retryable: bool, worker: str = "") -> bool:
        again = self.status.failed(job_id, code, message, retryable)
        if not again:
            self.payloads.pop(job_id, None)
        self.report({"event": "retry" if again else "failed", "job": job_id, "worker": worker,
                     "code": str(code), "message": message})
        return again


def stop_on_signals() -> None:
    """SIGTERM (and Ctrl-Break on Windows) stop a batch as Ctrl-C does: unfinished jobs are
    recorded as cancelled and the workers it started are stopped. A program that runs the batch
    in the background (Blender's Animate Collection) cannot rely on SIGINT, which a shell or a
    parent may have set to be ignored. Ray's core replaces the SIGTERM handler when it starts,
    so batch_ray calls this again after it."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


@dataclass
class BatchSettings:
    model: str = "default"
    cache: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    max_attempts: int = 2


def run_batch(jobs: list[BatchJob], status: BatchStatus, settings: BatchSettings,
              report: EventFn, ray_address: str | None = None, use_ray: bool = False,
              workers: int = 0, cpus_per_worker: int = 1) -> dict[str, int]:
    """Run every pending job of `status`; returns the final counts per state."""
    dispatcher = Dispatcher(status, report)
    try:
        if use_ray:
            from .batch_ray import run_on_ray

            run_on_ray(dispatcher, settings, address=ray_address, workers=workers,
                       cpus_per_worker=cpus_per_worker)
        else:
            run_here(dispatcher, settings)
    except KeyboardInterrupt:
        status.cancel_unfinished()
        raise
    return status.counts()


def run_here(dispatcher: Dispatcher, settings: BatchSettings) -> None:
    """One job after another in this process, the model loaded once."""
    status = dispatcher.status
    animator = None
    while True:
        pending = [job for job in status.pending() if status.items[job.id].state == "queued"]
        if not pending:
            return
        job = pending[0]
        payload = dispatcher.prepare(job)
        if payload is None:
            continue
        if animator is None:
            try:
                animator = Animator(settings.model, settings.cache, settings.device,
                                    settings.precision, settings.threads)
            except UserError as exc:
                # every job needs the model: stop here, leaving them queued for the next run
                raise UserError(f"{exc} Nothing more was run; the status file keeps what was done.",
                                code=exc.code) from None
        dispatcher.start(job.id, "this machine")
        dispatcher.finish(job.id, animator.run(payload), "this machine")
