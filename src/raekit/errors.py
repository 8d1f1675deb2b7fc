"""User-facing errors.

Everything that a user can cause (a wrong path, a value out of range, a corrupt file) is raised as
a :class:`RaekitError` with a one-line message. The command line prints that line and exits with
status 2; library users can catch the one class.
"""


class RaekitError(Exception):
    """An error the user can fix; its message is meant to be read, not debugged."""


class DivergenceError(RaekitError):
    """The training loss became NaN or infinite."""


class Interrupted(RaekitError):
    """The user stopped a long job (Ctrl-C); what it had finished is saved."""
