"""`forecast sync`: forecast every run of a tracker's experiments and write the forecasts back."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from forecaster import config as config_mod
from forecaster import laws, trackers
from forecaster.errors import InputError

EXIT_TRACKER = 1  # tracker unreachable / refused: cron mails the one line, the next tick retries
EXIT_INPUT = 2
EXIT_BUSY = 75  # EX_TEMPFAIL: another sync of the same scope is running
LAW_CHOICES = ("auto", *laws.available())
DEVICES = ("auto", "cpu", "cuda")

log = logging.getLogger("forecaster.sync")

_GENERIC = ("tracker", "tracking_uri", "experiment", "filter", "metric", "lr_key", "group_by", "law", "device",
            "target", "include_ended", "plots", "dry_run", "force", "lock_file", "lock_wait", "quiet", "seed",
            "max_points", "workers", "stop_runs", "follow_siblings")
# config-file [sync] names that differ from the option names (plural lists read naturally in TOML)
_ALIASES = {"experiments": "experiment", "metrics": "metric", "lr_keys": "lr_key", "uri": "tracking_uri"}


def _adapter_options(f):
    """Add the options every installed adapter declares (e.g. --wandb-dir) to the command."""
    seen = set()
    for name, ep in sorted(trackers.available().items()):
        try:
            cls = ep.load()
        except Exception:  # noqa: BLE001 - a broken plugin must not break `forecast --help`
            continue
        for opt in getattr(cls, "options", ()):
            if opt.dest in seen or opt.dest in _GENERIC:
                continue
            seen.add(opt.dest)
            f = click.option(f"--{opt.name}", opt.dest, help=f"[{name}] {opt.help}", envvar=opt.envvar,
                             is_flag=opt.is_flag, multiple=opt.multiple, default=None)(f)
    return f


@click.command("sync")
@click.option("--tracker", "tracker", default=None,
              help=f"Tracker adapter: {', '.join(sorted(trackers.available())) or 'none installed'} "
                   "(default mlflow; more via the forecaster.trackers entry-point group).")
@click.option("--tracking-uri", "tracking_uri", default=None,
              help="Tracker address, e.g. http://host:5000 or sqlite:///mlflow.db (MLflow also reads "
                   "$MLFLOW_TRACKING_URI).")
@click.option("--experiment", "-e", "experiment", multiple=True,
              help="Experiment (name or id) to sync; repeat for several.")
@click.option("--filter", "filter_", default=None,
              help="Only runs matching this tracker filter, e.g. \"params.model = 'gpt'\".")
@click.option("--metric", "-m", "metric", multiple=True,
              help="Metric key(s) to forecast (default loss); the first drives tags and alerts.")
@click.option("--lr-key", "lr_key", multiple=True, help="Metric key(s) holding the logged LR (default learning_rate, lr).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML config file ([sync], [tracker], [config], [alerts]); command-line options win.")
@click.option("--group-by", "group_by", default=None,
              help="Param/tag whose value splits an experiment into jointly fitted groups "
                   "(params.x / tags.x to pick one); default: one group per experiment.")
@click.option("--law", type=click.Choice(LAW_CHOICES), default=None,
              help="Loss-curve law, or auto (choose per group by validation; default).")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Where the fit runs (default: $FORECASTER_DEVICE, else auto: CUDA when available).")
@click.option("--target", type=float, default=None, help="Target metric value: ETA tag and target alerts.")
@click.option("--stop-runs", "stop_runs", is_flag=True, default=None,
              help="Opt-in: when a will-not-beat-best or divergence alert fires on a running run, ask the "
                   "tracker to stop it, once (W&B: stop request; MLflow cannot stop runs remotely: tags "
                   "forecast.stop_requested=true). Also `stop_runs = true` in [alerts]. Never the default.")
@click.option("--include-ended", "include_ended", is_flag=True, default=None,
              help="Also forecast finished/failed/killed runs that stopped before their planned end.")
@click.option("--plots/--no-plots", "plots", default=None, help="Attach a PNG of real vs forecast (default on).")
@click.option("--follow-siblings/--no-follow-siblings", "follow_siblings", default=None,
              help="Let forecasts follow the step-to-step wiggles that sibling runs trained on the same data "
                   "order share (default on); off: the law's smooth curve.")
@click.option("--dry-run", "dry_run", is_flag=True, default=None, help="Read and fit, print what would change, write nothing.")
@click.option("--force", is_flag=True, default=None, help="Re-forecast runs even when their inputs did not change.")
@click.option("--lock-file", "lock_file", type=click.Path(dir_okay=False), default=None,
              help="Lock against overlapping syncs (default: per scope under ~/.cache/forecaster).")
@click.option("--lock-wait", "lock_wait", type=float, default=None,
              help="Seconds to wait for another sync to finish before giving up (default 0).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Only the final summary (no per-run lines).")
@click.option("--seed", type=int, default=None, hidden=True)
@click.option("--max-points", "max_points", type=int, default=None, hidden=True)
@click.option("--workers", type=int, default=None, hidden=True)
@click.option("--scaling/--no-scaling", "scaling", default=None,
              help="Also fit each experiment's scaling law (N, D from run params; final or forecast loss) "
                   "into a summary run; settings in the config file's [scaling] table (present: on).")
@_adapter_options
def sync(**kw: Any) -> None:
    """Read runs from a tracker, forecast each active run to its planned end, write the forecasts back.

    \b
    Each forecast goes into a child run of its source (MLflow: mlflow.parentRunId) that logs
    the predicted curve under the same metric key at future steps (bands as <key>.p10 / .p90),
    so the experiment's charts overlay it on the real curve; the source run gets forecast.*
    tags (final value and interval, law, alert state, watermark, forecast run id). Source runs'
    status, end time and metrics are never changed. Unchanged runs cost nothing beyond one
    search: safe to run from cron every few minutes.

    \b
    Example:
      forecast sync --tracker mlflow --tracking-uri http://127.0.0.1:5000 -e pretrain
    Exit codes: 0 ok, 1 tracker unreachable/refused, 2 bad input, 75 another sync is running.
    """
    _logging(bool(kw.get("quiet")))
    try:
        code = _run(kw)
    except InputError as e:
        click.echo(f"error: {e}", err=True)
        code = EXIT_INPUT
    except trackers.TrackerError as e:
        click.echo(f"error: {e}", err=True)
        code = EXIT_TRACKER
    sys.exit(code)


def _logging(quiet: bool) -> None:
    # bind to the stderr of this invocation: a handler kept from an earlier one (same process,
    # e.g. an embedding program or a test runner) would write to a stream that is gone
    for old in list(log.handlers):
        log.removeHandler(old)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(h)
    log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    # the tracker clients' HTTP retries warn on every attempt; the one-line error says it all
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def _merge(kw: dict[str, Any], file_sync: dict[str, Any]) -> dict[str, Any]:
    """Command line over the config file's [sync] table over defaults."""
    out = {}
    for k, v in file_sync.items():
        k = _ALIASES.get(k, k)
        if k == "filter":
            k = "filter_"
        if k not in kw and k != "filter_":
            raise InputError(f"config file [sync]: unknown key {k!r}")
        if k in ("experiment", "metric", "lr_key") and isinstance(v, str):
            v = [v]
        out[k] = v
    for k, v in kw.items():
        if v is None or v == ():
            continue
        out[k] = v
    return out


def _run(kw: dict[str, Any]) -> int:
    from forecaster.sync import LockBusy, SyncSettings, default_lock_path, exclusive_lock
    from forecaster.sync import sync as run_sync

    data = config_mod.load(kw.pop("config_file")) if kw.get("config_file") else {}
    opts = _merge(kw, data.get("sync", {}))
    # the config file bypasses click's choices: the same check, so a typo is not a KeyError later
    for key, allowed in (("law", LAW_CHOICES), ("device", DEVICES)):
        value = opts.get(key)
        if value is not None and value not in allowed and not (key == "device" and str(value).startswith("cuda:")):
            raise InputError(f"config file [sync]: {key} {value!r} unknown; choose from {', '.join(allowed)}")
    name = opts.get("tracker") or "mlflow"
    cls = trackers.load(name)
    adapter_kw = dict(data.get("tracker", {}))
    for opt in cls.options:
        if opts.get(opt.dest) is not None:
            adapter_kw[opt.dest] = opts[opt.dest]
    alert_settings = notify_settings = None
    if "alerts" in data or opts.get("target") is not None or opts.get("stop_runs"):
        from forecaster.notify import load_alert_config

        table = dict(data.get("alerts", {}))
        if opts.get("target") is not None:
            table["target"] = float(opts["target"])
        alert_settings, notify_settings = load_alert_config(table)
        if opts.get("stop_runs"):
            notify_settings.stop_runs = True
    settings = SyncSettings(
        metrics=tuple(opts.get("metric") or ("loss",)),
        lr_keys=tuple(opts.get("lr_key") or ("learning_rate", "lr")),
        group_by=opts.get("group_by"), law=opts.get("law") or "auto", device=opts.get("device"),
        seed=int(opts.get("seed") or 0), include_ended=bool(opts.get("include_ended")),
        dry_run=bool(opts.get("dry_run")), force=bool(opts.get("force")),
        plots=True if opts.get("plots") is None else bool(opts["plots"]),
        max_points=int(opts.get("max_points") or 500), workers=int(opts.get("workers") or 8),
        mapping=config_mod.ConfigMapping.from_table(data.get("config")),
        alert_settings=alert_settings, notify_settings=notify_settings,
        forecaster_options={} if opts.get("follow_siblings") is None else {"follow_siblings": bool(opts["follow_siblings"])})
    scaling_table = data.get("scaling") or {}
    if opts.get("scaling") or (opts.get("scaling") is None and "scaling" in data
                               and scaling_table.get("enabled", True)):
        from forecaster.scaling.sync import ScalingSettings

        settings.scaling = ScalingSettings.from_table(scaling_table)
    experiments = sorted(opts.get("experiment") or ())
    scope = f"{name}|{opts.get('tracking_uri') or ''}|{','.join(experiments)}|{opts.get('filter_') or ''}"
    lock = opts.get("lock_file") or default_lock_path(scope)
    quiet = bool(opts.get("quiet"))
    try:
        # the lock comes first: an overlapping invocation must not even connect
        with exclusive_lock(lock, float(opts.get("lock_wait") or 0.0)):
            with cls(uri=opts.get("tracking_uri"), experiments=list(opts.get("experiment") or ()),
                     filter=opts.get("filter_"), **adapter_kw) as tracker:
                report = run_sync(tracker, settings,
                                  on_outcome=None if quiet else (lambda o: log.info(o.line())))
    except LockBusy as e:
        click.echo(f"forecast sync: {e}", err=True)
        return EXIT_BUSY
    click.echo(("[dry run] " if settings.dry_run else "") + report.summary())
    return 0
