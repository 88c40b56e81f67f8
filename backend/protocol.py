"""The seam between Blender and the backend process: typed, versioned messages.

Standard library only, so both sides import it: the add-on (no torch) and the backend server
(no bpy). Transport: one JSON object per line, client -> server on the server's stdin, server ->
client on the server's stdout, which the server reserves for protocol messages alone (library
chatter goes to stderr / the log). Arrays never travel as JSON numbers: the client writes the
mesh to an .npz file and the server writes the trajectories to another, both named in messages.

Every message carries "type" and "v" (PROTOCOL_VERSION). A peer that sees another major version
answers with an error of code "protocol_version" and the human fix (update the add-on/backend).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

PROTOCOL_VERSION = 1


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
    """Animate the mesh in `mesh_path` (.npz: vertices (N,3) float, faces (M,k) int or
    faces_flat + face_sizes for mixed polygons) and write `out_path` (.npz: frames (T,N,3))."""

    type = "animate"
    id: str = ""
    mesh_path: str = ""
    out_path: str = ""
    prompt: str = ""
    model: str = "default"
    seed: int | None = None
    guidance: float | None = None
    steps: int | None = None
    num_traj: int | None = None
    device: str = "auto"
    precision: str = "fp32"


@dataclass
class Cancel(Message):
    type = "cancel"
    id: str = ""


@dataclass
class Ping(Message):
    type = "ping"


@dataclass
class Shutdown(Message):
    type = "shutdown"


@dataclass
class Release(Message):
    """Drop the warm model (frees its memory) but keep the process; answered by Released."""

    type = "release"


# ---------------------------------------------------------------- server -> client

@dataclass
class Ready(Message):
    """Answer to Hello: versions and what the machine offers."""

    type = "ready"
    backend_version: str = ""
    torch_version: str = ""
    devices: list = field(default_factory=list)


@dataclass
class Progress(Message):
    type = "progress"
    id: str = ""
    stage: str = ""      # load, prepare, encode, text, sample, decode, write
    step: int = 0
    total: int = 0


@dataclass
class Warning(Message):  # noqa: A001 - the protocol's own name
    type = "warning"
    id: str = ""
    message: str = ""


@dataclass
class Error(Message):
    """A failure told as a sentence with the fix; `code` is stable for programs."""

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


@dataclass
class Released(Message):
    type = "released"
    freed: bool = False  # False when no model was loaded


MESSAGE_TYPES = {cls.type: cls for cls in (Hello, AnimateRequest, Cancel, Ping, Shutdown, Release,
                                           Ready, Progress, Warning, Error, Result, Cancelled,
                                           Heartbeat, Released)}


class ProtocolError(Exception):
    pass


class ProtocolVersionError(ProtocolError):
    """The line is well formed but speaks another protocol version: a release mismatch, not noise."""

    def __init__(self, message: str, version):
        super().__init__(message)
        self.version = version


def parse_line(line: str) -> Message:
    """One line of JSON -> its message dataclass; ProtocolError for anything malformed."""
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
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})
