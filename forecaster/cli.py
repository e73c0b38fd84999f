"""The `forecast` command line: one click group; each concept's module adds its own commands."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from forecaster import __version__

# "module:attribute" of every command or sub-group, imported when the group is built, with the
# line `forecast --help` shows for it (click's own cut of the docstring stops mid-sentence)
_COMMANDS = [
    ("forecaster.predict_cli:predict", "Forecast the rest of each run in a CSV of loss histories."),
    ("forecaster.predict_cli:backtest", "Hide the tails of finished runs; score how well they are forecast."),
    ("forecaster.whatif_cli:whatif", "What if a run cooled down now, later or over a shorter cooldown."),
    ("forecaster.scaling.cli:scaling", "Fit scaling laws across runs (Chinchilla, over-training)."),
    ("forecaster.sync.cli:sync", "Forecast the runs in MLflow or W&B and write the forecasts back."),
]


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line: cron mails and CI logs read the first line only."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"error: {self.format_message()}{hint}", err=True)


class _Group(click.Group):
    """Commands in the order of a first session (predict before sync); usage errors on one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        # a sub-command's options are parsed here, inside the group's invoke
        with _one_line_usage():
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_usage() -> Iterator[None]:
    """Re-raise click's usage errors as `_OneLineUsageError` (already one-line ones as they are)."""
    try:
        yield
    except _OneLineUsageError:
        raise
    except click.UsageError as e:
        raise _OneLineUsageError(e.format_message(), e.ctx) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forecast")
def main() -> None:
    """Forecast training runs from their loss histories and learning-rate schedules.

    Start with `forecast predict --input runs.csv --until STEP`; `forecast COMMAND --help` tells
    each command's input and options. Bad input ends with one `error:` line and exit code 2.
    """
    _own_process()


def _own_process() -> None:
    """What only the process's owner may set (the command, not the library), both against page
    faults (docs/benchmarks.md section 3): numpy's advice to the kernel to back big arrays with
    huge pages off, since where the kernel compacts memory for such advice (THP "defrag" =
    madvise, a common default) every fresh big array stalled (7.4 of 8 s of system time in reading
    a 10,000-run CSV); and glibc keeping freed memory for reuse instead of handing each batch's
    tensors back to the kernel and faulting them in again (a tenth of a 10,000-run call)."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            _set_madvise_hugepage = None
    if _set_madvise_hugepage is not None:
        _set_madvise_hugepage(False)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6")
            # M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD (glibc's largest: 32 MiB)
            for param, value in ((-1, 1 << 30), (-2, 64 << 20), (-3, 32 << 20)):
                libc.mallopt(param, value)
        except (OSError, AttributeError):  # another C library: its defaults stay
            pass


for _entry, _line in _COMMANDS:
    _module, _attr = _entry.split(":")
    _cmd = getattr(importlib.import_module(_module), _attr)
    _cmd.short_help = _cmd.short_help or _line
    main.add_command(_cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
