"""Errors the command line turns into one clear line and exit code 2."""


class InputError(ValueError):
    """Bad user input (file, columns, values, spec): reported as one line, exit code 2."""
