"""The error a user's mistake raises in augment: the CLI prints it as one line, without a traceback."""


class AugmentError(Exception):
    """Bad input or configuration given to augment (the message says what and where)."""
