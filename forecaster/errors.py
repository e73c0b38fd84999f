"""Errors the command line turns into one clear line and exit code 2."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable


class InputError(ValueError):
    """Bad user input (file, columns, values, spec): reported as one line, exit code 2."""


def one_line(exc: Exception) -> str:
    """The message of `exc` on a single line."""
    return " ".join(str(exc).split())


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command: bad input ends it with one `error: ...` line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            import click

            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(2)

    return wrapper
