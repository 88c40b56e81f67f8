"""Errors raised while reading or building training data.

Both are `backend.errors.UserError`s: a bad dataset file is the user's input, so the CLI prints one
sentence (what is wrong, how to fix it) instead of a traceback.
"""

from aam_seam.codes import ErrorCode
from backend.errors import UserError


class DatasetError(UserError):
    """A dataset file or sample that cannot be used (truncated, wrong shapes, bad indices...)."""

    code = ErrorCode.BAD_DATASET


class UnsafePickleError(DatasetError):
    """A pickled dataset file asked for something other than plain data and numpy arrays.

    Raised before anything it names is looked up, so the file's code never runs.
    """

    code = ErrorCode.UNSAFE_DATASET_FILE
