"""The one base of the errors a user's mistake raises: the CLI prints it as one line, exit status 2.

Each part has its own subclass (`AugmentError`, `PipelineError`, `DistillError`, the shard format's
`DatasetError`) so a library user can tell where a mistake was found; the CLI catches this base.
"""


class ZhkdError(Exception):
    """Bad input or configuration given to zhkd (the message names the file, the line or the option)."""


class InputError(ZhkdError):
    """An input file that cannot be read as rows: missing, empty, a header without rows (names the file)."""
