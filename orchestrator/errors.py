"""Errors the user can fix. The CLI prints them in one or two lines and exits 2, with no traceback."""

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input: a config key, variable, file or line the user must change.

    The message must name the culprit (key path, variable, file:line) and fit in one or two lines.
    """
