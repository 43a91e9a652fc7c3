"""``CommandError``: a failure the user can fix (a missing file, a bad argument, invalid data).

The command line prints its message as one line and exits with status 1; any other exception is a bug
of ours and keeps its traceback. Every layer may raise it, so it lives in layer 0.
"""


class CommandError(Exception):
    """A user-facing failure: ``str(error)`` says what is wrong and, where it can, what to do."""
