"""Errors a user can act on.

Every failure that comes from the user's input (a bad mesh, a missing checkpoint, an unusable
prompt) is raised as a UserError: its message names the problem and the fix, and the CLI and the
server print it as one sentence instead of a traceback. Bugs stay ordinary exceptions.
"""

from aam_seam.codes import ErrorCode


class UserError(Exception):
    """A problem with the input that the user can fix. `code` is stable for machines."""

    code = ErrorCode.BAD_INPUT

    def __init__(self, message: str, code: ErrorCode | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class MeshError(UserError):
    code = ErrorCode.BAD_MESH


class PromptError(UserError):
    code = ErrorCode.BAD_PROMPT


class CheckpointError(UserError):
    code = ErrorCode.BAD_CHECKPOINT


class ModelNotFoundError(UserError):
    code = ErrorCode.MODEL_NOT_FOUND
