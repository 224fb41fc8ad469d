"""The error a user's mistake raises in distill: the CLI prints it as one line, without a traceback."""

from zhkd.errors import ZhkdError


class DistillError(ZhkdError):
    """Bad input or configuration given to distill (the message says what and where)."""
