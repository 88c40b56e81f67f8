"""The stages of one animate job, in order, and how they share one progress bar.

The backend reports `Progress(stage, step, total)`; the add-on turns it into a fraction and a
phrase. Sampling is nearly all the work, so it takes most of the bar.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    QUEUED = "queued"      # the client's own state until the backend says more
    LOAD = "load"
    PREPARE = "prepare"
    ENCODE = "encode"
    TEXT = "text"
    SAMPLE = "sample"
    DECODE = "decode"
    SHAPE = "shape"        # Keep Shape, frame by frame
    WRITE = "write"


# (stage, where its share of the bar starts, where it ends, what a person reads)
_BAR = {
    Stage.QUEUED: (0.0, 0.0, "waiting for the backend"),
    Stage.LOAD: (0.0, 0.08, "loading the model"),
    Stage.PREPARE: (0.08, 0.1, "preparing the mesh"),
    Stage.ENCODE: (0.1, 0.14, "encoding the shape"),
    Stage.TEXT: (0.14, 0.16, "reading the prompt"),
    Stage.SAMPLE: (0.16, 0.94, "sampling the motion"),
    Stage.DECODE: (0.94, 0.96, "decoding"),
    Stage.SHAPE: (0.96, 0.98, "keeping the shape"),
    Stage.WRITE: (0.98, 1.0, "writing the result"),
}


def _known(stage: str) -> Stage | None:
    try:
        return Stage(stage)
    except ValueError:
        return None


def progress_fraction(stage: str, step: int, total: int) -> float:
    """0..1 of the whole job for a progress report (stage, step of total)."""
    known = _known(stage)
    if known is None:
        return 0.0
    lo, hi, _ = _BAR[known]
    part = (step / total) if total else 0.0
    return lo + (hi - lo) * min(max(part, 0.0), 1.0)


def progress_text(stage: str, step: int, total: int) -> str:
    known = _known(stage)
    name = _BAR[known][2] if known is not None else str(stage)
    return f"{name} {step}/{total}" if known is Stage.SAMPLE and total else name
