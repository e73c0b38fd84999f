"""The exception tree: every error forecaster raises on purpose is a `ForecasterError`."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable


class ForecasterError(Exception):
    """Base of every error forecaster raises on purpose."""


class InputError(ForecasterError, ValueError):
    """Bad user input (file, columns, values, spec): reported as one line, exit code 2."""


class NotFittedError(ForecasterError, AttributeError):
    """An estimator was asked to predict before `fit`."""


class TrackerError(ForecasterError, RuntimeError):
    """The tracker cannot be used right now (unreachable, auth refused): the sync stops, exit 1."""


class RunGone(ForecasterError, RuntimeError):
    """One run disappeared or became read-only mid-sync (deleted): that run is skipped, others go on."""


class LockBusy(ForecasterError, RuntimeError):
    """Another sync of the same scope holds the lock (cron overlap): exit without touching anything."""


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
