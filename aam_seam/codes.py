"""Every error code either half can report, as one enum.

An error travels as a code for programs (retry or not, which exit status) and a sentence with the
fix for people. Codes are plain strings on the wire; `ErrorCode` is a StrEnum, so a member
compares and hashes equal to its string (a code read off the wire finds it in the sets below)
and JSON writes it as one.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # the input: fixable by the user
    BAD_INPUT = "bad_input"
    BAD_MESH = "bad_mesh"
    BAD_PROMPT = "bad_prompt"
    BAD_MASK = "bad_mask"
    BAD_CHECKPOINT = "bad_checkpoint"
    BAD_DATASET = "bad_dataset"
    UNSAFE_DATASET_FILE = "unsafe_dataset_file"
    MODEL_NOT_FOUND = "model_not_found"
    NO_GPU = "no_gpu"
    OUT_OF_MEMORY = "out_of_memory"
    NUMERICAL = "numerical"
    # the request itself (a client bug or a removed work folder)
    BAD_REQUEST = "bad_request"
    BAD_MESSAGE = "bad_message"
    # the backend process
    INTERNAL = "internal"
    PROTOCOL_VERSION = "protocol_version"
    BACKEND_BROKEN = "backend_broken"
    BACKEND_DIED = "backend_died"
    BACKEND_NOT_READY = "backend_not_ready"
    BACKEND_NOT_FOUND = "backend_not_found"
    BACKEND_NOT_SET_UP = "backend_not_set_up"
    BAD_RESULT = "bad_result"
    NO_RESULT = "no_result"
    # the Blender side
    WRITEBACK = "writeback"
    EXPORT = "export"
    NO_OBJECTS = "no_objects"
    NO_PROMPT = "no_prompt"
    EMPTY_MESH = "empty_mesh"
    OBJECT_GONE = "object_gone"
    BUSY = "busy"
    NOTHING_QUEUED = "nothing_queued"
    # outcomes that are not failures of one job
    ITEMS_FAILED = "items_failed"
    CANCELLED = "cancelled"


# Failures worth another attempt with the same input (a fresh backend process is started).
RETRYABLE = frozenset({ErrorCode.BACKEND_DIED, ErrorCode.BACKEND_NOT_READY, ErrorCode.BAD_RESULT,
                       ErrorCode.INTERNAL})
# Failures that would hit every job of a batch alike: the batch stops instead of failing each item.
FATAL = frozenset({ErrorCode.BACKEND_NOT_SET_UP, ErrorCode.BACKEND_NOT_FOUND,
                   ErrorCode.PROTOCOL_VERSION, ErrorCode.BACKEND_BROKEN})
# Failures the user fixes by changing the input or the settings (a command line exits 2 on them).
USER_FIXABLE = frozenset({
    ErrorCode.BAD_INPUT, ErrorCode.BAD_MESH, ErrorCode.BAD_PROMPT, ErrorCode.BAD_MASK,
    ErrorCode.BAD_CHECKPOINT, ErrorCode.MODEL_NOT_FOUND, ErrorCode.NO_GPU, ErrorCode.OUT_OF_MEMORY, ErrorCode.NUMERICAL,
    ErrorCode.BACKEND_NOT_SET_UP, ErrorCode.WRITEBACK, ErrorCode.EXPORT, ErrorCode.NO_OBJECTS,
    ErrorCode.NO_PROMPT, ErrorCode.EMPTY_MESH, ErrorCode.OBJECT_GONE, ErrorCode.BUSY,
    ErrorCode.NOTHING_QUEUED})


class SeamError(ValueError):
    """A file or message at the seam that cannot be used; `code` for programs, the text for people."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
