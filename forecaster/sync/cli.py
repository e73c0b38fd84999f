"""`forecast sync`: forecast every run of a tracker's experiments and write the forecasts back."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import IO, Any

import click

from forecaster import config as config_mod
from forecaster import redact, trackers
from forecaster.device import CHOICES as DEVICES
from forecaster.errors import InputError, LockBusy, TrackerError, one_line
from forecaster.predict_cli import LAW_CHOICES
from forecaster.sync.lock import default_lock_path, exclusive_lock, exclusive_locks
from forecaster.sync.settings import SyncSettings

# tracker unreachable / refused (or a failure of our own): cron mails the one line, the next tick retries
EXIT_TRACKER = 1
EXIT_INPUT = 2
EXIT_BUSY = 75  # EX_TEMPFAIL: another sync of the same experiment is running

log = logging.getLogger("forecaster.sync")

_GENERIC = ("tracker", "tracking_uri", "experiment", "filter", "metric", "lr_key", "group_by", "law", "device",
            "target", "include_ended", "plots", "dry_run", "force", "lock_file", "lock_wait", "quiet", "seed",
            "max_points", "workers", "stop_runs", "follow_siblings", "log_file", "cache", "sample", "lr_sample", "cooldown_share")
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
              help="Lock against overlapping syncs (default: one per experiment under ~/.cache/forecaster, "
                   "keyed by the canonical tracker address and experiment id, however they are spelled).")
@click.option("--lock-wait", "lock_wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Seconds to wait for another sync to finish before giving up (default 0).")
@click.option("--cache/--no-cache", "cache", default=None,
              help="Keep the histories read in a local cache beside the lock file, so later syncs read only "
                   "new steps (default on; --no-cache reads every history in full each time).")
@click.option("--sample", "sample", type=click.IntRange(min=2), default=None, metavar="N",
              help="Read at most N points of each history, evenly spaced (MLflow's sampled history route): a "
                   "faster first sync, at a cost in accuracy (docs/benchmarks.md); default every point.")
@click.option("--lr-sample", "lr_sample", type=click.IntRange(min=0), default=None, metavar="N",
              help="Read each LR history at N points, evenly spaced (default 500; 0: every point): an LR series "
                   "is a schedule, and 500 points gave the same forecasts as every step (docs/benchmarks.md).")
@click.option("--cooldown-share", "cooldown_share", type=click.FloatRange(0, 0.95), default=None, metavar="F",
              help="Runs at constant LR also get the forecast of cooling down now, linear to 0 over this share of "
                   "the planned run (default 0.2; 0: off): the series <metric>.if_cooldown_now on the metric's "
                   "chart and forecast.if_cooldown_now.* tags; [alerts] anneal_target fires anneal_now.")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Only the final summary (no per-run lines).")
@click.option("--log-file", "log_file", metavar="PATH", default=None,  # checked on opening: one error line
              help="Append timestamped lines (per-run lines, summary, errors) to this file instead of the "
                   "terminal, creating its folders; for cron. Errors (exit 1, 2) also go to stderr, so cron "
                   "mails them.")
@click.option("--seed", type=int, default=None, hidden=True)
@click.option("--max-points", "max_points", type=click.IntRange(min=2), default=None, hidden=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--scaling/--no-scaling", "scaling", default=None,
              help="Also fit each experiment's scaling law (N, D from run params; final or forecast loss) "
                   "into a summary run; settings in the config file's [scaling] table (present: on).")
@_adapter_options
def sync(**kw: Any) -> None:
    """Read runs from a tracker, forecast each active run to its planned end, write the forecasts back.

    \b
    Each forecast goes into a run of its own beside its source ("<run> forecast", tag
    forecast.source_run, drawn in the source's colour) that logs the predicted curve under the
    same metric key at future steps (bands as <key>.p10 / .p90), so the experiment's default
    chart view overlays it on the real curve; the source run gets forecast.*
    tags (final value and interval, law, alert state, watermark, forecast run id). Source runs'
    status, end time and metrics are never changed. Unchanged runs cost nothing beyond one
    search: safe to run from cron every few minutes.

    \b
    Example:
      forecast sync --tracker mlflow --tracking-uri http://127.0.0.1:5000 -e pretrain
    Exit codes: 0 ok, 1 tracker unreachable/refused, 2 bad input, 75 another sync of the same
    experiment is running. URIs and webhook URLs are never printed with their credentials.
    """
    out = _Output()
    try:
        code = _run(kw, out)
    except InputError as e:
        code = out.error(f"error: {e}", EXIT_INPUT)
    except TrackerError as e:
        code = out.error(f"error: {e}", EXIT_TRACKER)
    except Exception as e:  # noqa: BLE001 - a bug of ours: one redacted line, never a traceback with a secret
        out.trace(traceback.format_exc())
        code = out.error(f"error: unexpected {type(e).__name__}: {one_line(e)} (please report this)", EXIT_TRACKER)
    finally:
        out.close()
    sys.exit(code)


def _stamp(t: float | None = None) -> str:
    """ISO 8601 local time with its UTC offset, to the second."""
    when = _dt.datetime.now() if t is None else _dt.datetime.fromtimestamp(t)
    return when.astimezone().isoformat(timespec="seconds")


class _Stamped(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{_stamp(record.created)} {super().format(record)}"


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class _Output:
    """Where one invocation's lines go: plain on a terminal, timestamped in logs and the --log-file.

    Installs its logging handlers for the length of the command and takes them away again, so a
    program (or test runner) that calls the command twice gets no handler bound to a stream that is gone.
    """

    def __init__(self) -> None:
        self.file: IO[str] | None = None
        self._saved: list[tuple[logging.Logger, list[logging.Handler], bool, int]] = []
        self._filtered: list[logging.Handler] = []
        self._redacting = redact.RedactingFilter()

    def open(self, path: str | Path) -> None:
        """Append to `path`, creating its folders (a fresh account has no ~/.cache yet)."""
        p = Path(path).expanduser()
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(p, "a", encoding="utf-8", buffering=1)
        except OSError as e:
            raise InputError(f"log file {p}: {e.strerror or e}") from None

    def start_logging(self, quiet: bool, packages: list[str]) -> None:
        """Per-run lines of `forecaster.sync` (unless quiet) and warnings of the core and the adapters."""
        if self.file is not None:
            h: logging.Handler = logging.StreamHandler(self.file)
            h.setFormatter(_Stamped("%(message)s"))
        else:
            h = logging.StreamHandler(sys.stderr)
            h.setFormatter(logging.Formatter("%(message)s") if _is_tty(sys.stderr) else _Stamped("%(message)s"))
        h.addFilter(self._redacting)
        levels = {"forecaster": logging.WARNING, "forecaster.sync": logging.WARNING if quiet else logging.INFO}
        levels.update({p: logging.WARNING for p in packages if p not in levels})
        for name, level in levels.items():
            lg = logging.getLogger(name)
            self._saved.append((lg, list(lg.handlers), lg.propagate, lg.level))
            for old in list(lg.handlers):
                lg.removeHandler(old)
            if name != "forecaster.sync":  # it reaches the handler through "forecaster"
                lg.addHandler(h)
                lg.propagate = False
            lg.setLevel(level)
        # the tracker clients' HTTP retries warn on every attempt; the one-line error says it all
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        # the clients' own handlers, the root's and logging's last resort print what libraries log,
        # URIs included: redact those too
        others = [h for name in ("", "mlflow", "wandb") for h in logging.getLogger(name).handlers]
        for other in [*others, logging.lastResort] if logging.lastResort is not None else others:
            if self._redacting not in other.filters:
                other.addFilter(self._redacting)
                self._filtered.append(other)

    def line(self, text: str) -> None:
        """The summary (stdout, or the log file)."""
        text = redact.redact(text)
        if self.file is not None:
            self.file.write(f"{_stamp()} {text}\n")
        else:
            click.echo(text if _is_tty(sys.stdout) else f"{_stamp()} {text}")

    def error(self, text: str, code: int) -> int:
        """A one-line failure: stderr as it is; in the log file timestamped with its exit code."""
        text = " ".join(redact.redact(text).split())
        if self.file is not None:
            self.file.write(f"{_stamp()} {text} (exit {code})\n")
            if code == EXIT_BUSY:  # a long sync overlapping the next tick is routine, not worth a mail
                return code
        click.echo(text, err=True)
        return code

    def trace(self, text: str) -> None:
        """An unexpected failure's traceback, redacted, into the log file only (stderr gets one line)."""
        if self.file is not None:
            self.file.write(redact.redact(text))

    def close(self) -> None:
        for h in self._filtered:
            h.removeFilter(self._redacting)
        self._filtered.clear()
        for lg, handlers, propagate, level in reversed(self._saved):
            for h in list(lg.handlers):
                lg.removeHandler(h)
            for h in handlers:
                lg.addHandler(h)
            lg.propagate = propagate
            lg.setLevel(level)
        self._saved.clear()
        if self.file is not None:
            self.file.close()
            self.file = None


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


def _run(kw: dict[str, Any], out: _Output) -> int:
    from forecaster import sync as sync_api  # its `sync` looked up per call (tests replace it)

    # before anything can fail: whatever quotes these is redacted
    redact.register_environment()
    for var in ("MLFLOW_TRACKING_URI", "WANDB_BASE_URL"):
        redact.register_uri(os.environ.get(var))
    redact.register_uri(kw.get("tracking_uri"))
    if kw.get("log_file"):  # first, so that even a bad config file is reported there
        out.open(kw["log_file"])
    data = config_mod.load(kw.pop("config_file")) if kw.get("config_file") else {}
    redact.register_uri(data.get("sync", {}).get("tracking_uri") or data.get("sync", {}).get("uri"))
    opts = _merge(kw, data.get("sync", {}))
    if out.file is None and opts.get("log_file") is not None:
        if not isinstance(opts["log_file"], str) or not opts["log_file"]:
            raise InputError("config file [sync]: log_file must be a path (a string)")
        out.open(opts["log_file"])
    # adapters log under their own package names (entry point "forecaster_mlflow:MlflowTracker")
    packages = sorted({ep.value.split(":")[0].split(".")[0] for ep in trackers.available().values()})
    out.start_logging(bool(opts.get("quiet")), packages)
    # the config file bypasses click's choices: the same check, so a typo is not a KeyError later
    for key, allowed in (("law", LAW_CHOICES), ("device", DEVICES)):
        value = opts.get(key)
        if value is not None and value not in allowed and not (key == "device" and str(value).startswith("cuda:")):
            raise InputError(f"config file [sync]: {key} {value!r} unknown; choose from {', '.join(allowed)}")
    name = opts.get("tracker") or "mlflow"
    cls = trackers.load(name)
    config_mod.check_table({k: v for k, v in data.get("sync", {}).items()},
                           {o.dest: config_mod.NAMES if o.multiple else config_mod.BOOL if o.is_flag
                            else config_mod.TEXT for o in cls.options}, "config file [sync]")
    if any(not str(e).strip() for e in opts.get("experiment") or ()):
        raise InputError("an experiment name is empty (--experiment / [sync] experiments)")
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
    lock_file = opts.get("lock_file")
    wait_s = float(opts.get("lock_wait") or 0.0)
    if opts.get("cooldown_share") is not None:  # (the config schema and click checked it)
        settings.cooldown_share = float(opts["cooldown_share"])
    if opts.get("sample") is not None:  # (the config schema and click checked it)
        settings.history_sample = opts["sample"]
    if opts.get("lr_sample") is not None:
        settings.lr_sample = int(opts["lr_sample"]) or None
    use_cache = opts.get("cache") is None or bool(opts.get("cache"))
    quiet = bool(opts.get("quiet"))
    mark = "[dry run] " if settings.dry_run else ""
    try:
        with contextlib.ExitStack() as held:
            if lock_file:  # a lock file named by the user comes first: an overlap must not even connect
                held.enter_context(exclusive_lock(lock_file, wait_s))
            tracker = held.enter_context(cls(uri=opts.get("tracking_uri"),
                                             experiments=list(opts.get("experiment") or ()),
                                             filter=opts.get("filter_"), **adapter_kw))
            if not lock_file:
                # one lock per experiment by what it is (canonical address, experiment id), however
                # spelled: read-only look-ups only, nothing is written before the lock is held
                held.enter_context(exclusive_locks([default_lock_path(k) for k in tracker.identity()], wait_s))
            if use_cache:
                # in the state directory the lock lives in, one file per target (its canonical
                # identity, as the lock), only ever used while the lock is held
                state = Path(lock_file).expanduser().parent if lock_file else default_lock_path("").parent
                settings.history_cache = state / f"history-{trackers.fingerprint(*tracker.identity())}.sqlite"
            report = sync_api.sync(tracker, settings,
                              on_outcome=None if quiet else (lambda o: log.info(mark + o.line())))
            urls = sorted({u for u in (tracker.scope_url(s) for s in {o.run.scope for o in report.outcomes}) if u})
    except LockBusy as e:
        return out.error(f"forecast sync: {e}", EXIT_BUSY)
    out.line(mark + report.summary())
    for url in urls:
        out.line(f"forecasts beside the real curves: {url}")
    return 0
