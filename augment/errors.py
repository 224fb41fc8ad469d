"""The error a user's mistake raises in augment: the CLI prints it as one line, without a traceback."""

from zhkd.errors import ZhkdError


class AugmentError(ZhkdError):
    """Bad input or configuration given to augment (the message says what and where)."""
