"""Errors a user can act on.

Every failure that comes from the user's input (a bad mesh, a missing checkpoint, an unusable
prompt) is raised as a UserError: its message names the problem and the fix, and the CLI and the
server print it as one sentence instead of a traceback. Bugs stay ordinary exceptions.
"""


class UserError(Exception):
    """A problem with the input that the user can fix. `code` is stable for machines."""

    code = "bad_input"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class MeshError(UserError):
    code = "bad_mesh"


class PromptError(UserError):
    code = "bad_prompt"


class CheckpointError(UserError):
    code = "bad_checkpoint"


class ModelNotFoundError(UserError):
    code = "model_not_found"
