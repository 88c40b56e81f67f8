"""Typed, versioned messages between the add-on (client) and the backend process (server).

Transport: one JSON object per line, client -> server on the server's stdin, server -> client on
the server's stdout, which the server reserves for these lines alone (library chatter goes to
stderr, the log). Arrays never travel as JSON numbers: the request's mesh and the result are
`.npz` files named in the messages (see `arrays`).

Every message carries "type" and "v" (PROTOCOL_VERSION). A peer that reads another version
answers with an error of code `protocol_version` and the fix (the two halves come from different
releases).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

PROTOCOL_VERSION = 3


@dataclass
class Message:
    type = "message"

    def to_line(self) -> str:
        data = asdict(self)
        data["type"] = self.type
        data["v"] = PROTOCOL_VERSION
        return json.dumps(data, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------- client -> server

@dataclass
class Hello(Message):
    type = "hello"
    client: str = ""


@dataclass
class AnimateRequest(Message):
    """Animate the mesh in `mesh_path` and write the result to `out_path` (layouts: `arrays`).
    None means the model's default; `solver` is one of the names the backend's Ready lists;
    `quality` picks a sampling schedule, which an explicit `steps` or `solver` overrides.
    The mesh file may carry a per-vertex `mask` (0 pinned .. 1 moves); `then` chains more
    prompts, each segment starting from the previous one's last pose; `loop` names one of
    limits.LOOP_METHODS; `variations` takes use seeds seed, seed + 1, ... in one batched pass."""

    type = "animate"
    id: str = ""
    mesh_path: str = ""
    out_path: str = ""
    prompt: str = ""
    model: str = "default"
    seed: int | None = None
    guidance: float | None = None
    steps: int | None = None
    solver: str | None = None
    quality: str | None = None       # a limits.QUALITY_PRESETS name; None: limits.DEFAULT_QUALITY
    num_traj: int | None = None
    frames: int | None = None        # the clip retimed to this many frames; None: the model's
    strength: float | None = None    # a factor on the motion (0-2); None: 1
    then: list | None = field(default_factory=list)  # prompts of the segments after the first
    loop: str | None = None          # a limits.LOOP_METHODS name; None: the clip does not loop
    variations: int | None = None    # takes side by side; None: 1
    mask_falloff: float | None = None  # smooth the mask's edge over this share of the diagonal
    keep_shape: str | None = None    # a limits.KEEP_SHAPE_MODES name; None: the model's own
    device: str = "auto"
    precision: str = "fp32"


@dataclass
class Cancel(Message):
    type = "cancel"
    id: str = ""


@dataclass
class Shutdown(Message):
    type = "shutdown"


# ---------------------------------------------------------------- server -> client

@dataclass
class Ready(Message):
    """Answer to Hello: versions and what this backend offers. `solvers` lists
    {"name", "evaluations_per_step", "description"} in the backend's registry order."""

    type = "ready"
    backend_version: str = ""
    torch_version: str = ""
    devices: list = field(default_factory=list)
    solvers: list = field(default_factory=list)


@dataclass
class Progress(Message):
    type = "progress"
    id: str = ""
    stage: str = ""      # a stages.Stage value
    step: int = 0
    total: int = 0


@dataclass
class Notice(Message):
    """Something the user should know about a job that still succeeds (a warning)."""

    type = "warning"
    id: str = ""
    message: str = ""


@dataclass
class Error(Message):
    """A failure told as a sentence with the fix; `code` (a codes.ErrorCode value) is for programs."""

    type = "error"
    id: str = ""
    code: str = ""
    message: str = ""


@dataclass
class Result(Message):
    type = "result"
    id: str = ""
    out_path: str = ""
    seed: int = 0
    seeds: list = field(default_factory=list)  # one per take; seeds[0] == seed
    frames: int = 0
    vertices: int = 0
    seconds: float = 0.0


@dataclass
class Cancelled(Message):
    type = "cancelled"
    id: str = ""


@dataclass
class Heartbeat(Message):
    type = "heartbeat"
    busy: bool = False


MESSAGE_TYPES = {cls.type: cls for cls in (Hello, AnimateRequest, Cancel, Shutdown, Ready, Progress,
                                           Notice, Error, Result, Cancelled, Heartbeat)}


class ProtocolError(Exception):
    """A line that is no valid message. `id` is the job it named, when it named one as text, so
    the error can still reach that job."""

    def __init__(self, message: str, id: str = ""):  # noqa: A002 - the protocol's own field name
        super().__init__(message)
        self.id = id


class ProtocolVersionError(ProtocolError):
    """The line is well formed but speaks another protocol version: a release mismatch, not noise."""

    def __init__(self, message: str, version):
        super().__init__(message)
        self.version = version


# What a field's annotation admits. bool is an int in Python but never a number on the wire.
_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,)}


def _admits(annotation: str, value) -> bool:
    for kind in (k.strip() for k in annotation.split("|")):
        if kind == "None":
            if value is None:
                return True
            continue
        types = _KINDS[kind]
        if isinstance(value, bool) and bool not in types:
            continue
        if isinstance(value, types):
            return True
    return False


def parse_line(line: str) -> Message:
    """One line of JSON -> its message dataclass; ProtocolError for anything malformed, a field
    of the wrong type included (values in range are the receiver's to judge: see limits)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not a protocol message (invalid JSON): {line[:120]!r}") from exc
    if not isinstance(data, dict) or "type" not in data:
        raise ProtocolError(f"not a protocol message (no type): {line[:120]!r}")
    version = data.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolVersionError(
            f"protocol version {version} received, this side speaks {PROTOCOL_VERSION}: the add-on "
            "and the backend come from different releases; reinstall the extension.", version)
    cls = MESSAGE_TYPES.get(data.pop("type"))
    if cls is None:
        raise ProtocolError(f"unknown message type in {line[:120]!r}")
    job_id = data.get("id") if isinstance(data.get("id"), str) else ""
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if not _admits(f.type, value):
            raise ProtocolError(f"field '{f.name}' of the '{cls.type}' message must be {f.type}, "
                                f"got {type(value).__name__}", id=job_id)
        values[f.name] = value
    return cls(**values)
