"""User-facing errors: the CLI prints them as one line, without a traceback."""


class UnetsegError(ValueError):
    """Bad input from the user (a file, a config key, a value); the message names the culprit."""
