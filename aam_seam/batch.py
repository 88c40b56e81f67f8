"""The batch seam: the JOBS.jsonl lines a client writes and the event lines `python -m backend
batch --events` prints, one JSON object each.

A job line: {"id", "mesh", "prompt", "out"} plus any of OPTION_NAMES (animate's own names). The
mesh is an .npz with `vertices`, `faces` ((M, k) ints, -1 after a polygon's last corner) and,
for a mask, `mask` (named in the line as "FILE.npz:mask").

Events: {"event": one of EVENTS, "job": id, ...}. started: worker, attempt; done: outputs (the
.npz files, one per take), seeds, seconds, warnings; retry / failed: code, message; cluster and
worker_died: message. A line that is not an event (a library printing on stdout) is skipped.
"""

from __future__ import annotations

import json

import numpy as np

from .arrays import padded_polygons
from .atomic import write_atomically

OPTION_NAMES = ("seed", "steps", "guidance", "num_traj", "frames", "strength", "quality", "solver",
                "then", "repeat", "loop", "mask", "mask_falloff", "variations", "keep_shape")
EVENTS = ("cluster", "started", "done", "retry", "failed", "worker_died")


def job_line(job_id: str, mesh: str, prompt: str, out: str, **options) -> str:
    """One line of a jobs file; options that are None are left to the backend's defaults."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown batch job option(s) {', '.join(unknown)}")
    data = {"id": str(job_id), "mesh": str(mesh), "prompt": prompt, "out": str(out)}
    data.update({k: v for k, v in options.items() if v is not None})
    return json.dumps(data)


def write_job_mesh(path, vertices, faces=None, mask=None) -> None:
    """The mesh of one job, in the layout `backend.mesh_io` reads (polygons -1 padded)."""
    arrays = {"vertices": np.asarray(vertices, dtype=np.float64)}
    if faces is not None and hasattr(faces, "flat") and hasattr(faces, "sizes"):
        arrays["faces"] = padded_polygons(faces.flat, faces.sizes)
    elif faces is not None:
        arrays["faces"] = np.asarray(faces, dtype=np.int64)
    if mask is not None:
        arrays["mask"] = np.asarray(mask, dtype=np.float32)
    write_atomically(path, lambda fh: np.savez(fh, **arrays))


def parse_event(line: str) -> dict | None:
    """The event on one stdout line, or None for anything else."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("event") not in EVENTS:
        return None
    return event
