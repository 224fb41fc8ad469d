"""The error a user's mistake raises in pipelines: the CLI prints it as one line, without a traceback."""

from zhkd.errors import ZhkdError


class PipelineError(ZhkdError):
    """Bad input or configuration given to pipelines (the message says what and where)."""
