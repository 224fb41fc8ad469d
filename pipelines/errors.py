"""The error a user's mistake raises in pipelines: the CLI prints it as one line, without a traceback."""


class PipelineError(Exception):
    """Bad input or configuration given to pipelines (the message says what and where)."""
