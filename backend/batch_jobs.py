"""A batch of animate jobs: the JOBS.jsonl file it is read from, and the status file it keeps.

No torch here. One JSON object per line asks for one animation:

    {"mesh": "bird.obj", "prompt": "a bird flaps its wings", "out": "takes/bird.npz", "seed": 3}

`mesh`, `prompt` and `out` are required; every other key is an option of `python -m backend
animate` under its own name (`num_traj`, `mask_falloff`, `then` as a list ...). Relative paths are
read from the jobs file's folder, so a folder of jobs can move as a whole. The whole file is
checked before anything runs, so a typo on line 900 does not surface after hours of work.

The status file (JOBS.status.json beside it, rewritten whole after every change) records each
job's state, attempts, error and outputs: a batch that was stopped or crashed runs again from
it, skipping the jobs that are done and whose outputs are still there.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aam_seam import atomic, limits
from aam_seam.codes import ErrorCode, SeamError

from .errors import UserError

STATUS_FORMAT = "animateanymesh-batch-status"
STATUS_VERSION = 1
STATES = ("queued", "running", "done", "failed", "cancelled")

# key -> (accepted JSON types, what it is): the options animate takes, under its own names
OPTION_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "seed": ((int,), "an integer"),
    "steps": ((int,), "an integer"),
    "guidance": ((int, float), "a number"),
    "num_traj": ((int,), "an integer"),
    "frames": ((int,), "an integer"),
    "strength": ((int, float), "a number"),
    "quality": ((str,), "a preset name"),
    "solver": ((str,), "a solver name"),
    "then": ((list, str), "a prompt or a list of prompts"),
    "repeat": ((int,), "an integer"),
    "loop": ((str, bool), "a loop method's name, true or false"),
    "mask": ((str,), "a weights file (.npy, .npz or FILE.npz:NAME)"),
    "mask_falloff": ((int, float), "a number"),
    "variations": ((int,), "an integer"),
    "keep_shape": ((str,), "a keep shape mode (off, auto, on)"),
}
REQUIRED_KEYS = ("mesh", "prompt", "out")
KNOWN_KEYS = ("id", *REQUIRED_KEYS, *OPTION_KEYS)
MAX_REPORTED = 10  # problems listed at once; the rest are counted


@dataclass(frozen=True)
class BatchJob:
    id: str
    mesh: Path
    prompt: str
    out: Path
    options: dict = field(default_factory=dict)  # animate's keyword arguments, checked
    line: int = 0

    @property
    def then(self) -> list[str]:
        """The segments after the prompt, as animate chains them (`then` played `repeat` times)."""
        return limits.chained(self.prompt, self.options.get("then", []),
                              self.options.get("repeat", 1))

    def outputs(self) -> list[Path]:
        """The files this job writes: OUT, or OUT_1 .. OUT_K for K variations."""
        return take_paths(self.out, int(self.options.get("variations") or 1))


def take_paths(out: Path, count: int) -> list[Path]:
    """Where `count` takes of one request go: OUT itself, or OUT_1 .. OUT_K (animate's naming)."""
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(1, count + 1)]


def read_jobs(path: str | Path) -> list[BatchJob]:
    """Every job of a JOBS.jsonl file, or UserError listing what is wrong with it (line by line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no jobs file at {path}; write one JSON object per line with mesh, "
                        "prompt and out.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the jobs file {path} ({exc}); it must be UTF-8 text, one "
                        "JSON object per line.") from None
    jobs, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            jobs.append(parse_job(raw, number, path.parent))
        except UserError as exc:
            problems.append(f"line {number}: {str(exc).rstrip('.')}")
    problems += _clashes(jobs)
    if problems:
        shown = "; ".join(problems[:MAX_REPORTED])
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise UserError(f"{path.name} cannot run: {shown}{more}. Nothing was run.")
    if not jobs:
        raise UserError(f"{path.name} holds no jobs; write one JSON object per line with mesh, "
                        "prompt and out.")
    return jobs


def parse_job(raw: str, number: int, folder: Path) -> BatchJob:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise UserError("not a JSON object; each line is one {\"mesh\": ..., \"prompt\": ..., "
                        "\"out\": ...}")
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r}; the keys are {', '.join(KNOWN_KEYS)}")
    for key in REQUIRED_KEYS:
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise UserError(f"{key!r} is missing or not text; every job needs mesh, prompt and out")
    out = _path(folder, data["out"])
    if out.suffix.lower() != ".npz":
        raise UserError(f"'out' must end in .npz (got {out.name})")
    options = {}
    for key, value in data.items():
        if key not in OPTION_KEYS or value is None:
            continue
        types, what = OPTION_KEYS[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise UserError(f"{key!r} must be {what} (got {json.dumps(value)})")
        options[key] = value
    options = _normalised(options, folder)
    if "solver" in options:
        from .solvers import solver_names

        if options["solver"] not in solver_names():
            raise UserError(f"unknown solver {options['solver']!r}; choose {', '.join(solver_names())}")
    try:
        limits.check_repeat(options.get("repeat", 1))
        limits.check_request_values(prompt=data["prompt"], **{k: v for k, v in options.items()
                                                               if k not in ("repeat", "mask", "solver")})
    except SeamError as exc:
        raise UserError(exc.message) from None
    job_id = str(data.get("id") or out.stem)
    return BatchJob(id=job_id, mesh=_path(folder, data["mesh"]), prompt=data["prompt"], out=out,
                    options=options, line=number)


def _normalised(options: dict, folder: Path) -> dict:
    if isinstance(options.get("then"), str):
        options["then"] = [options["then"]]
    if "then" in options and not all(isinstance(p, str) for p in options["then"]):
        raise UserError("'then' must be a prompt or a list of prompts")
    if "quality" in options:
        options["quality"] = options["quality"].lower()
    loop = options.pop("loop", None)
    if loop is True:
        options["loop"] = limits.DEFAULT_LOOP
    elif isinstance(loop, str) and loop.lower() not in ("", "off", "none"):
        options["loop"] = loop
    if "mask" in options:
        name, colon, array = options["mask"].rpartition(":") if ".npz:" in options["mask"] else \
            (options["mask"], "", "")
        options["mask"] = str(_path(folder, name)) + (colon + array)
    return options


def _path(folder: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else folder / path


def _clashes(jobs: list[BatchJob]) -> list[str]:
    problems, ids, outs = [], {}, {}
    for job in jobs:
        if job.id in ids:
            problems.append(f"line {job.line}: id {job.id!r} is also line {ids[job.id]}'s; give each "
                            "job its own id (or its own out)")
        ids.setdefault(job.id, job.line)
        for out in job.outputs():
            key = str(out.resolve())
            if key in outs:
                problems.append(f"line {job.line}: writes {out.name} as line {outs[key]} does; give "
                                "each job its own out")
            outs.setdefault(key, job.line)
    return problems


# ----------------------------------------------------------------------------- status

@dataclass
class JobStatus:
    id: str
    state: str = "queued"
    attempts: int = 0
    error_code: str = ""
    error: str = ""
    outputs: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    seconds: float | None = None
    worker: str = ""
    warnings: list[str] = field(default_factory=list)
    updated: float = 0.0


class BatchStatus:
    """The state of every job, saved whole after every change (when it has a path)."""

    def __init__(self, jobs: list[BatchJob], path: Path | None, max_attempts: int = 2):
        self.jobs = {job.id: job for job in jobs}
        self.path = path
        self.max_attempts = max(1, int(max_attempts))
        self.items = {job.id: JobStatus(job.id) for job in jobs}

    @classmethod
    def resume(cls, jobs: list[BatchJob], path: Path | None, max_attempts: int = 2,
               redo: bool = False) -> "BatchStatus":
        """A status for `jobs` that keeps the finished jobs of an earlier run at `path` (unless
        `redo`, or an output has gone since); everything else runs again."""
        status = cls(jobs, path, max_attempts)
        if path is None or redo or not path.exists():
            return status
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("format") != STATUS_FORMAT:
                raise ValueError("not a batch status file")
            for data in saved.get("jobs", []):
                item = JobStatus(**{k: v for k, v in data.items() if k in JobStatus.__dataclass_fields__})
                if item.id in status.items and item.state == "done" and item.outputs and \
                        all(Path(p).exists() for p in item.outputs):
                    status.items[item.id] = item
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"the status file {path} cannot be read ({exc}); delete it or pass "
                            "--redo to run every job again.") from None
        return status

    def pending(self) -> list[BatchJob]:
        return [self.jobs[i] for i, item in self.items.items() if item.state in ("queued", "running")]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for item in self.items.values():
            out[item.state] += 1
        return out

    def started(self, job_id: str, worker: str = "") -> JobStatus:
        item = self.items[job_id]
        item.state, item.worker = "running", worker
        item.attempts += 1
        return self._changed(item)

    def done(self, job_id: str, outputs, seeds, seconds: float, warnings=()) -> JobStatus:
        item = self.items[job_id]
        item.state, item.error_code, item.error = "done", "", ""
        item.outputs, item.seeds = [str(p) for p in outputs], [int(s) for s in seeds]
        item.seconds, item.warnings = round(float(seconds), 3), list(warnings)
        return self._changed(item)

    def failed(self, job_id: str, code: str, message: str, retryable: bool) -> bool:
        """Record a failure; True when the job goes back to the queue for another attempt."""
        item = self.items[job_id]
        again = retryable and item.attempts < self.max_attempts
        item.state = "queued" if again else "failed"
        item.error_code = str(code)
        item.error = f"attempt {item.attempts} failed ({message}); retrying" if again else message
        self._changed(item)
        return again

    def cancel_unfinished(self) -> int:
        count = 0
        for item in self.items.values():
            if item.state in ("queued", "running"):
                item.state, item.error_code, item.error = "cancelled", ErrorCode.CANCELLED.value, "cancelled"
                count += 1
                item.updated = time.time()
        self.save()
        return count

    def _changed(self, item: JobStatus) -> JobStatus:
        item.updated = time.time()
        self.save()
        return item

    def save(self) -> None:
        if self.path is None:
            return
        data = {"format": STATUS_FORMAT, "version": STATUS_VERSION,
                "counts": self.counts(), "jobs": [asdict(item) for item in self.items.values()]}
        atomic.write_text_atomically(self.path, json.dumps(data, indent=1) + "\n")
