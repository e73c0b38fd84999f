"""PNGs of a run's real curve against its forecast with the p10-p90 band (attached to forecast runs),
and against what-if options (`forecast whatif --plot`)."""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from forecaster.histories import RunForecast, RunHistory

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.advisor import Advice

# matplotlib's font cache and some backends' state are process-global: draw one figure at a time
# (the GIL serialises the drawing anyway; the lock only rules out shared-state races).
_LOCK = threading.Lock()


def forecast_png(history: RunHistory, forecast: RunForecast, title: str = "", dpi: int = 100,
                 max_points: int = 2000, log_scale: bool = False) -> bytes:
    """Real (observed) versus predicted curve with its band, 1350 px wide, as PNG bytes.

    The metric axis is linear and framed on the part of the run that matters for the forecast (the
    later observed points and the band), so the band is seen at a glance; the early steep descent
    is cut off at the top rather than squashing the tail into a few pixels.
    """
    steps, values = history.steps, history.values
    if len(steps) > max_points:  # thin for drawing only; the line looks the same
        idx = np.unique(np.linspace(0, len(steps) - 1, max_points).astype(int))
        steps, values = steps[idx], values[idx]
    with _LOCK:
        fig, ax = _figure(dpi)
        ax.plot(steps, values, color="#1f77b4", lw=1.4, label=f"observed {history.metric}")
        if len(forecast.steps):
            fs = np.concatenate([[history.last_step], forecast.steps]) if len(history.steps) else forecast.steps
            join = [float(history.values[-1])] if len(history.steps) else []
            p50 = np.concatenate([join, forecast.p50])
            lo = np.concatenate([join, forecast.p10])
            hi = np.concatenate([join, forecast.p90])
            ax.fill_between(fs, lo, hi, color="#ff7f0e", alpha=0.3, lw=0, label="80 % band (p10-p90)")
            ax.plot(fs, p50, color="#d95f02", lw=2.0, ls="--",
                    label=f"forecast, {forecast.law} law" if forecast.law else "forecast")
            ax.axvline(history.last_step, color="0.5", lw=0.9, ls=":", label=f"last observed step {history.last_step:,}")
        ok = np.isfinite(values)
        if log_scale and np.all(values[ok] > 0):
            ax.set_yscale("log")
        else:
            _frame(ax, values[ok], forecast)
        ax.set_xlabel("step", fontsize=12)
        ax.set_ylabel(history.metric, fontsize=12)
        ax.tick_params(labelsize=11)
        head = title or history.run
        if forecast.final is not None:
            lo_f, hi_f = forecast.final_interval
            head += (f": predicted final {history.metric} {forecast.final:.4g} (80 % band {lo_f:.4g}-{hi_f:.4g}) "
                     f"at step {int(forecast.steps[-1]):,}")
        ax.set_title(head, fontsize=13, y=1.01)  # placed, not auto-placed: that lays the axes out again
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=11, loc="upper right")
        return _png(fig)


def whatif_png(h: RunHistory, advice: "Advice", dpi: int = 100) -> bytes:
    """The real curve and every what-if option's forecast with its p10-p90 band, as PNG bytes."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    with _LOCK:
        fig, ax = _figure(dpi)
        ax.plot(h.steps, h.values, color="#1f77b4", lw=1.4, label=f"observed {h.metric}")
        vals = [h.values[len(h.values) // 3:]]
        for k, o in enumerate(advice.options):
            f, c = o.forecast, cmap((2 * k + 2) % 20 if k < 9 else (2 * k - 15) % 20)
            ax.fill_between(f.steps, f.p10, f.p90, color=c, alpha=0.15, lw=0)
            ax.plot(f.steps, f.p50, color=c, lw=1.6, ls="--", label=f"{o.label}: {o.final:.4g}")
            vals += [f.p10, f.p90]
        ax.axvline(h.last_step, color="0.5", lw=0.9, ls=":", label=f"last observed step {h.last_step:,}")
        _limits(ax, vals)
        ax.set_xlabel("step", fontsize=12)
        ax.set_ylabel(h.metric, fontsize=12)
        ax.set_title(f"{h.run}: what if (p50 dashed, p10-p90 shaded)", fontsize=13, y=1.01)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        return _png(fig)


def _figure(dpi: int) -> tuple[Any, Any]:
    """A 13.5 x 6.5 inch figure on its own Agg canvas (no pyplot state) and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.5, 6.5), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig: Any) -> bytes:
    # fixed margins, not tight_layout (which lays every text out once more: a quarter of a plot's
    # time), and light compression (zlib's default level was another quarter, for 12 % less size):
    # a sync draws one figure per run
    fig.subplots_adjust(left=0.065, right=0.985, bottom=0.09, top=0.93)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 3})
    return buf.getvalue()


def _frame(ax, observed: np.ndarray, forecast: RunForecast) -> None:
    """Metric limits that hold the band and the later 80 % of the observed points, with a margin."""
    _limits(ax, [observed[len(observed) // 5:], forecast.p10, forecast.p90])


def _limits(ax, parts: list[np.ndarray]) -> None:
    """Metric limits that hold the finite values of `parts`, with an 8 % margin (none for a flat set)."""
    vals = np.concatenate(parts) if parts else np.empty(0)
    vals = vals[np.isfinite(vals)]
    if len(vals) < 2 or not np.ptp(vals) > 0:
        return
    pad = 0.08 * np.ptp(vals)
    ax.set_ylim(vals.min() - pad, vals.max() + pad)
