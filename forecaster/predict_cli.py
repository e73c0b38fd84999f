"""`forecast predict` and `forecast backtest`: the CSV front end of the forecaster core."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click

from forecaster import csvio, laws, phases
from forecaster.device import CHOICES as DEVICES
from forecaster.errors import InputError, one_line_errors
from forecaster.histories import RunForecast, RunHistory
from forecaster.selfcal import ON_BY_DEFAULT as SELFCAL_DEFAULT

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster

LAW_CHOICES = ("auto", *laws.available())  # `forecast sync --law` offers the same
# the band's scales (`Forecaster` settings) as the command line's environment defaults: a
# recalibration (docs/benchmarks.md) needs no code
BAND_ENV = {"inflation": "FORECASTER_INFLATION", "extrapolation": "FORECASTER_EXTRAPOLATION",
            "misfit": "FORECASTER_MISFIT"}


def _warn(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def _info(msg: str) -> None:
    click.echo(msg, err=True)


def _forecaster(law: str, device: str, seed: int, follow_siblings: bool = True,
                selfcal: bool = SELFCAL_DEFAULT) -> Forecaster:
    from forecaster.forecast import Forecaster

    band: dict[str, float] = {}
    for name, var in BAND_ENV.items():
        if os.environ.get(var):
            try:
                band[name] = float(os.environ[var])
            except ValueError:
                raise InputError(f"${var} must be a number, got {os.environ[var]!r}") from None
    return Forecaster(law=law, device=device, seed=seed, follow_siblings=follow_siblings, selfcal=selfcal, **band)


def apply_plan(histories: list[RunHistory], schedule_spec: str | None, until: int | None) -> None:
    """Give runs without future rows a horizon up to `until` and the planned schedule."""
    sched = None
    if schedule_spec is not None:
        from forecaster import schedules

        sched = schedules.parse(schedule_spec)
        if until is None:
            if sched.total is None:
                raise InputError(f"--schedule {sched.spec()!r} has no total=<last step>; give --until STEP")
            until = int(sched.total)
    if until is not None and until <= 0:
        raise InputError(f"--until must be a positive step, got {until}")
    extended = 0
    for h in histories:
        no_future = h.horizon is None or len(h.horizon) == 0
        if sched is not None and (no_future or not h.has_lr):
            h.schedule = sched  # logged LR points still win where they exist
        if no_future and until is not None:
            h.horizon = csvio.extend_horizon(h, until)
            extended += int(len(h.horizon) > 0)
    if until is not None and extended == 0:
        raise InputError(f"--until {until} is not after the last row of any run without future rows")


def _output_order(histories: list[RunHistory], forecasts: list[RunForecast]) -> list[RunForecast]:
    """Forecasts of runs with a horizon, with reasons for those skipped or without one."""
    out = []
    for h, f in zip(histories, forecasts):
        if not f.skipped and (h.horizon is None or len(h.horizon) == 0):
            f.notes.append("no rows after the last observed value: fitted with its group, nothing to "
                           "forecast (give --until STEP)")
        out.append(f)
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--input", "input_path", required=True, metavar="CSV",
              help="History CSV: columns step and the metric (required); run, group, lr (optional); "
                   "names ignore case and W&B's _step counts as step. "
                   "Rows after a run's last metric value (LR set, metric empty) are its horizon. "
                   "A folder reads each CSV file as one run (name = file stem, group = folder).")
@click.option("--metric", default="loss", show_default=True, help="Name of the metric column to forecast.")
@click.option("--schedule", "schedule_spec", metavar="SPEC",
              help="Planned LR schedule for runs without future rows, e.g. "
                   "'cosine(peak=3e-4, warmup=100, total=10000)'; logged LR rows win where present.")
@click.option("--until", type=int, metavar="STEP",
              help="Forecast runs without future rows up to STEP, every k-th step (k = the run's median "
                   "logging interval). Default with --schedule: its total. Without --schedule the LR "
                   "stays at its last logged value.")
@click.option("--law", type=click.Choice(LAW_CHOICES), default="auto", show_default=True,
              help="Law to fit; auto picks per group the law that best forecasts held-back data. "
                   "momentum_size fits one law over runs of several sizes (a `size` column, parameters) "
                   "and forecasts runs of a new size from their LR rows alone.")
@click.option("--output", metavar="CSV", help="Forecast CSV (run, step, lr, p50, p10, p90); default stdout.")
@click.option("--summary", "summary_path", metavar="JSON",
              help="Per-run summary JSON: law, parameters, final value with interval, skipped runs.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where the batched fit runs (auto: CUDA when available).")
@click.option("--follow-siblings/--no-follow-siblings", default=True, show_default=True,
              help="Let a forecast follow the step-to-step wiggles that siblings trained on the same data "
                   "order share with the run (measured per sibling; see docs/how-it-works.md). Off: the "
                   "forecast is the law's smooth curve.")
@click.option("--selfcal/--no-selfcal", default=SELFCAL_DEFAULT, show_default=True,
              help="Scale each group's band by how wrong the same forecast was on its finished siblings, "
                   "cut at the same share of their runs (one extra fit; docs/how-it-works.md).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the band sampling.")
@click.option("--memory-budget", type=click.IntRange(min=1), default=512, show_default=True, metavar="MIB",
              envvar="FORECASTER_MEMORY_BUDGET",
              help="Working memory of the fit, in MiB: a big input is fitted and written in chunks of whole "
                   "groups sized to it, with a progress bar on a terminal (also $FORECASTER_MEMORY_BUDGET).")
@one_line_errors
def predict(input_path: str, metric: str, schedule_spec: str | None, until: int | None, law: str,
            output: str | None, summary_path: str | None, device: str, follow_siblings: bool, seed: int,
            memory_budget: int = 512, selfcal: bool = SELFCAL_DEFAULT) -> None:
    """Fit loss-curve laws to the runs in a CSV and forecast each run's remaining steps.

    Runs sharing a `group` are fitted jointly (siblings lend each other the response to LR decay);
    every group goes through one batched fit. Where siblings trained on the same data order share a
    run's step-to-step wiggles, its forecast follows theirs at the steps they logged. Where nothing
    in a group has shown how much an LR decay gains (a lone run before or part way through its
    cooldown), the band spans a range of gains and the summary notes it. The output
    has one row per horizon step with the median forecast p50 and the 10 %/90 % band. Runs that
    cannot be forecast (too short, a rising metric such as an accuracy) are reported as skipped
    with the reason (summary JSON and stderr) while the rest are forecast.

    \b
    Example:
      forecast predict --input runs.csv --output forecast.csv --summary summary.json
      forecast predict --input run.csv --until 20000
      forecast predict --input run.csv --schedule 'cosine(peak=3e-4, warmup=100, total=10000)'
    Exit codes: 0 ok (skipped runs are listed on stderr), 2 bad input or nothing to forecast
    (one `error:` line).
    """
    t0 = time.perf_counter()
    with phases.phase("read"):
        histories, report = csvio.read_histories(input_path, metric)
    _warn(report.warnings())
    with phases.phase("plan"):
        apply_plan(histories, schedule_spec, until)
    if not any(h.horizon is not None and len(h.horizon) for h in histories):
        last = max((h.last_step for h in histories if len(h.steps)), default=0)
        raise InputError(f"nothing to forecast: no run has rows after its last observed value; say how far "
                         f"with --until STEP (e.g. --until {2 * max(last, 1)}, twice the last step {last}), "
                         "or --schedule SPEC with total=STEP, or add future rows (lr set, metric empty)")
    n_groups = len({h.group for h in histories})
    tty = sys.stderr.isatty()  # progress for a person watching; logs get only the final line
    if tty:
        _info(f"read {report.rows} rows: {len(histories)} runs in {n_groups} group{'s' * (n_groups != 1)}; "
              "fitting ...")
    forecaster = _forecaster(law, device, seed, follow_siblings, selfcal)
    # whole groups per chunk, sized to the memory budget: a big input's fit and bands never hold
    # more than one chunk's tensors, and each chunk's rows are written before the next is fitted
    from forecaster.chunks import group_chunks

    chunks = group_chunks(histories, memory_budget * 2**20, forecaster.max_points)
    sink = _LazyOutput(output)
    entries: list[dict] = []
    skipped: list[tuple[str, str]] = []
    wanted = done = n = 0
    first_skip: tuple[str, str] | None = None
    bar = None
    if tty:
        from tqdm import tqdm

        bar = tqdm(total=len(histories), desc="forecasting", unit="run", leave=False, file=sys.stderr)
    try:
        for idx in chunks:
            part = [histories[i] for i in idx]
            forecasts = _output_order(part, forecaster.fit(part).predict())
            for h, f in zip(part, forecasts):
                if h.horizon is not None and len(h.horizon):
                    wanted += 1
                    if f.skipped and first_skip is None:
                        first_skip = (f.run, f.skipped)
                if f.skipped:
                    skipped.append((f.run, f.skipped))
                elif len(f.steps):
                    done += 1
            if done:
                with phases.phase("write"):
                    n += csvio.write_forecasts(forecasts, sink.stream(), header=not sink.started)
                    sink.started = True
            if summary_path:
                entries += csvio.summary_entries(part, forecasts)
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
        sink.close()
    if done == 0:
        if summary_path:
            csvio.write_json(csvio.assemble_summary(entries, warnings=report.warnings()), summary_path)
        raise InputError(f"no run could be forecast: {wanted} skipped (e.g. run {first_skip[0]!r}: {first_skip[1]})")
    for run, reason in skipped[:10]:
        _info(f"skipped run {run!r}: {reason}")
    if len(skipped) > 10:
        _info(f"... and {len(skipped) - 10} more skipped runs (see --summary)")
    if summary_path:
        settings = {"input": str(input_path), "metric": metric, "law": law, "schedule": schedule_spec,
                    "until": until, "device": str(forecaster.device_), "seed": seed,
                    "follow_siblings": follow_siblings, "selfcal": selfcal, "chunks": len(chunks)}
        csvio.write_json(csvio.assemble_summary(entries, warnings=report.warnings(), settings=settings),
                         summary_path)
    phases.write({"predict total": time.perf_counter() - t0, "predict cpu": time.process_time()})
    _info(f"forecast {done} of {len(histories)} runs ({len(skipped)} skipped), {n} rows, "
          f"{time.perf_counter() - t0:.1f} s on {forecaster.device_}"
          + (f" in {len(chunks)} chunks" if len(chunks) > 1 else ""))


class _LazyOutput:
    """The forecast CSV, opened at its first row: a call whose runs are all skipped leaves no file."""

    def __init__(self, path: str | None) -> None:
        self.path, self.fh, self.started = path, None, False

    def stream(self):
        if self.path is None:
            return sys.stdout
        if self.fh is None:
            self.fh = open(self.path, "w", newline="")
        return self.fh

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _cutoffs(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--cutoffs must be comma-separated numbers in (0, 1), got {text!r}") from None
    if not vals or any(not 0 < v < 1 for v in vals):
        raise InputError(f"--cutoffs must be comma-separated numbers in (0, 1), got {text!r}")
    return vals


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--input", "input_path", required=True, metavar="CSV_OR_DIR",
              help="History CSV (as for predict) or a folder where each CSV file is one run and each "
                   "folder a group of siblings.")
@click.option("--metric", default="loss", show_default=True, help="Name of the metric column.")
@click.option("--cutoffs", default="0.25,0.5,0.75", show_default=True,
              help="Shares of each finished run's planned steps at which its metric is cut.")
@click.option("--law", type=click.Choice(LAW_CHOICES), default="auto", show_default=True,
              help="Law to fit (auto: chosen per case on held-back data; with --early-stop, per group "
                   "and checkpoint by how well each law's stated intervals did on the finished runs).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where the batched fit runs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the band sampling.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (summary and per-case records), not a table.")
@click.option("--early-stop", "early_stop", is_flag=True,
              help="Instead: replay each group's runs in file order as if trained one after another and "
                   "score the stop rule P(final beats the best finished run) < 0.05 against Optuna's "
                   "median, successive-halving and hyperband pruners and a patience rule (compute saved, "
                   "regret, false-stop rate, best run stopped, calibration). Metric: lower is better.")
@one_line_errors
def backtest(input_path: str, metric: str, cutoffs: str, law: str, device: str, seed: int, as_json: bool,
             early_stop: bool = False) -> None:
    """Hide the tail of finished runs and measure how well the forecaster predicts it.

    Each finished run becomes a target in turn, cut at each cutoff (metric blanked after the cut,
    LR rows kept) while its siblings stay complete; all cases go through one batched fit, one group
    per case. Reported per cutoff: relative error of the final value (truth = mean of the last 3
    values, prediction = mean p50 there), mean error over the whole unseen part, and the share of
    unseen points inside the 10-90 % band, next to two baselines: the last observed value and a
    schedule-blind power law E + A*t^-alpha fitted to the target's own prefix.
    """
    if early_stop:
        from forecaster.earlystop import cli_early_stop

        cli_early_stop(input_path, metric, law, device, seed, as_json)
        return
    cuts = _cutoffs(cutoffs)
    histories, report = csvio.read_histories(input_path, metric)
    _warn(report.warnings())
    from forecaster import backtest as bt  # scipy's optimiser: only `backtest` pays its import

    results, info = bt.run_backtest(histories, cuts, _forecaster(law, device, seed))

    rows = bt.summarize(results, cuts)
    if as_json:
        csvio.write_json({"input": str(input_path), "metric": metric, "law": law, "cutoffs": cuts,
                          "run": info, "summary": rows, "cases": bt.case_records(results)}, None)
    else:
        click.echo(bt.markdown(rows))
        skipped = [r for r in results if r.skipped]
        if skipped:
            click.echo(f"\n{len(skipped)} case(s) not scored, e.g. {skipped[0].case.key}: {skipped[0].skipped}")
