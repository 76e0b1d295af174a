"""Errors that the command line turns into one line on stderr and exit code 2."""


class InputError(ValueError):
    """Bad user input: the message names the file (and row/column) and how to fix it."""
