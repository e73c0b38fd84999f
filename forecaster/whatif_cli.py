"""`forecast whatif`: one run of a CSV forecast under other LR futures (the cooldown advisor)."""

from __future__ import annotations

import csv
import json
import sys
from typing import IO

import click
import numpy as np

from forecaster import advisor, csvio
from forecaster.device import CHOICES as DEVICES
from forecaster.errors import InputError, one_line_errors
from forecaster.histories import RunHistory
from forecaster.plotting import whatif_png
from forecaster.predict_cli import LAW_CHOICES, _forecaster, _warn, apply_plan
from forecaster.whatif import SHAPES



def parse_starts(text: str) -> list[int]:
    """'A:B:K' -> K cooldown starts from step A to step B; 'A,B,C' -> those steps."""
    try:
        if ":" in text:
            a, b, k = (float(x) for x in text.split(":"))
            if k < 1 or k != int(k) or b < a:
                raise ValueError
            return sorted({int(round(x)) for x in np.linspace(a, b, int(k))})
        return sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise InputError(f"--cooldown-starts {text!r}: expected A:B:K (K starts from step A to B) "
                         "or a comma-separated list of steps") from None


def _lengths(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise InputError(f"--cooldown-lengths {text!r}: expected a comma-separated list of steps") from None


def _pick(histories: list[RunHistory], run: str) -> list[RunHistory]:
    """The run's group (its siblings lend the response to an LR decay); nothing else is fitted."""
    mine = next((h for h in histories if h.run == run), None)
    if mine is None:
        names = ", ".join(h.run for h in histories[:5]) + (" ..." if len(histories) > 5 else "")
        raise InputError(f"run {run!r} is not in the input (runs: {names})")
    return [h for h in histories if h.group == mine.group]


def table(a: advisor.Advice) -> str:
    """The options as an aligned text table: final with band, and the paired gain over cooling now."""
    rows = [("option", "start", "length", "end", "p50", "p10", "p90", "gain vs now")]
    for o in a.options:
        g = o.extra.get("gain")
        lo, hi = o.interval
        rows.append((o.label, "" if o.start is None else f"{o.start:,}", "" if o.length is None else f"{o.length:,}",
                     f"{o.end:,}", f"{o.final:.4g}", f"{lo:.4g}", f"{hi:.4g}", "" if g is None else f"{g[1]:+.4g}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths)))
                     for r in rows)


def write_csv(a: advisor.Advice, out: IO[str]) -> int:
    """One row per option and forecast step: option, kind, start, length, step, lr, p50, p10, p90."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["run", "option", "kind", "start", "length", "step", "lr", "p50", "p10", "p90"])
    n = 0
    for o in a.options:
        f = o.forecast
        for s, lr, p50, p10, p90 in zip(f.steps, f.lr, f.p50, f.p10, f.p90):
            w.writerow([a.run, o.label, o.kind, "" if o.start is None else o.start, "" if o.length is None else o.length,
                        int(s), f"{lr:.6g}", f"{p50:.6g}", f"{p10:.6g}", f"{p90:.6g}"])
            n += 1
    return n


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--input", "input_path", required=True, metavar="CSV",
              help="History CSV as for `forecast predict` (run, group, step, lr, metric); the run's group "
                   "is fitted together, so finished siblings that decayed their LR lend their response.")
@click.option("--run", "run", required=True, metavar="NAME", help="The run to ask about.")
@click.option("--metric", default="loss", show_default=True, help="Name of the metric column.")
@click.option("--schedule", "specs", multiple=True, metavar="SPEC",
              help="A whole schedule to compare (repeatable), e.g. 'wsd(peak=3e-4, warmup=100, decay=0.2, "
                   "total=30000)'; its past is replaced by the run's logged LR.")
@click.option("--cooldown-length", type=click.IntRange(min=1), metavar="N",
              help="Cooldown length in steps for 'now' and for the starts (default: --share of the planned run).")
@click.option("--share", type=float, default=advisor.DEFAULT_SHARE, show_default=True,
              help="Default cooldown length as a share of the planned run (of the run it would make "
                   "without a plan).")
@click.option("--cooldown-starts", "starts", metavar="A:B:K",
              help="Cooldown starts: K steps from A to B, or a list 'A,B,C' (default: 5 from now to the "
                   "latest that ends at the planned end).")
@click.option("--cooldown-lengths", "lengths", metavar="N,N,...",
              help="Cooldown lengths that end at the planned end, for the best length (default: "
                   "5-50 % of the planned run).")
@click.option("--shape", type=click.Choice(SHAPES), default="linear", show_default=True,
              help="Shape of the cooldown.")
@click.option("--final-lr", type=float, default=0.0, show_default=True,
              help="LR at the cooldown's end as a share of the LR at its start.")
@click.option("--until", type=int, metavar="STEP",
              help="The planned end for a run without future rows (its LR held at the last value).")
@click.option("--output", metavar="CSV", help="Every option's forecast: option, kind, start, length, step, lr, p50, p10, p90.")
@click.option("--json", "json_path", metavar="JSON", help="The answer as JSON ('-': stdout, instead of the table).")
@click.option("--plot", "plot_path", metavar="PNG", help="The real curve and every option with its band.")
@click.option("--law", type=click.Choice(LAW_CHOICES), default="auto", show_default=True, help="Law to fit.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where the batched fit runs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the band sampling.")
@one_line_errors
def whatif(input_path: str, run: str, metric: str, specs: tuple[str, ...], cooldown_length: int | None,
           share: float, starts: str | None, lengths: str | None, shape: str, final_lr: float, until: int | None,
           output: str | None, json_path: str | None, plot_path: str | None, law: str, device: str,
           seed: int) -> None:
    """What if a run cooled down now, later, or shorter? Forecast it under other LR futures.

    Fits the run's group, then forecasts the run, in one batched call, under: cooling down now (a
    --share of the planned run, linear to 0 by default), its planned schedule, cooling down after
    more steps at its current LR (--cooldown-starts), cooldowns of several lengths that end at the
    planned end (the best one, with how often it is best over the band's draws), and any --schedule.
    All options share the band's random draws, so the gains between them are paired. Where nothing
    in the group has decayed its LR, the response to a cooldown is not identified: the bands span
    no gain to the largest plausible one and the output says so.

    \b
    Example:
      forecast whatif --input runs.csv --run wsd-1b --cooldown-starts 20000:28000:5 --plot whatif.png
    Exit codes: 0 ok, 2 bad input (one `error:` line).
    """
    from forecaster import schedules

    histories, report = csvio.read_histories(input_path, metric)
    _warn(report.warnings())
    group = _pick(histories, run)
    if until is not None:
        mine = next(h for h in group if h.run == run)
        apply_plan([mine], None, until)
    extra = [schedules.parse(s) for s in specs]
    fc = _forecaster(law, device, seed).fit(group)
    i = next(k for k, h in enumerate(fc.histories_) if h.run == run)
    if i in fc.skipped_:
        raise InputError(f"run {run!r} could not be fitted: {fc.skipped_[i]}")
    a = advisor.advise(fc, i, length=cooldown_length, share=share, shape=shape, final_lr=final_lr,
                       starts=None if starts is None else parse_starts(starts), lengths=_lengths(lengths),
                       extra=extra)
    if json_path == "-":
        click.echo(json.dumps(a.to_dict(), indent=1))
    else:
        click.echo("\n".join(a.lines()))
        click.echo("")
        click.echo(table(a))
        if json_path:
            with open(json_path, "w") as fh:
                json.dump(a.to_dict(), fh, indent=1)
    if output:
        if output == "-":
            write_csv(a, sys.stdout)
        else:
            with open(output, "w", newline="") as fh:
                write_csv(a, fh)
    if plot_path:
        with open(plot_path, "wb") as fh:
            fh.write(whatif_png(fc.histories_[i], a))
