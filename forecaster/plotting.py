"""PNG of a run's real curve against its forecast with the p10-p90 band (attached to forecast runs)."""

from __future__ import annotations

import io
import threading

import numpy as np

from forecaster.histories import RunForecast, RunHistory

# matplotlib's font cache and some backends' state are process-global: draw one figure at a time
# (the GIL serialises the drawing anyway; the lock only rules out shared-state races).
_LOCK = threading.Lock()


def forecast_png(history: RunHistory, forecast: RunForecast, title: str = "", dpi: int = 90,
                 max_points: int = 2000) -> bytes:
    """Real (observed) versus predicted curve with its band, log-scaled metric axis, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, values = history.steps, history.values
    if len(steps) > max_points:  # thin for drawing only; the line looks the same
        idx = np.unique(np.linspace(0, len(steps) - 1, max_points).astype(int))
        steps, values = steps[idx], values[idx]
    with _LOCK:
        fig = Figure(figsize=(7, 4), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(steps, values, color="#1f77b4", lw=1.2, label="observed")
        if len(forecast.steps):
            fs = np.concatenate([[history.last_step], forecast.steps]) if len(history.steps) else forecast.steps
            join = [float(history.values[-1])] if len(history.steps) else []
            p50 = np.concatenate([join, forecast.p50])
            lo = np.concatenate([join, forecast.p10])
            hi = np.concatenate([join, forecast.p90])
            ax.fill_between(fs, lo, hi, color="#ff7f0e", alpha=0.25, lw=0, label="p10-p90")
            ax.plot(fs, p50, color="#ff7f0e", lw=1.5, ls="--",
                    label=f"forecast ({forecast.law})" if forecast.law else "forecast")
            ax.axvline(history.last_step, color="0.6", lw=0.8, ls=":")
        finite = np.concatenate([values[np.isfinite(values) & (values > 0)],
                                 forecast.p10[np.isfinite(forecast.p10) & (forecast.p10 > 0)],
                                 forecast.p90[np.isfinite(forecast.p90) & (forecast.p90 > 0)]])
        if len(finite):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(history.metric)
        if forecast.final is not None:
            lo_f, hi_f = forecast.final_interval
            title = (title + "\n" if title else "") + (
                f"final {history.metric} {forecast.final:.4g} (p10-p90 {lo_f:.4g}-{hi_f:.4g}) "
                f"at step {int(forecast.steps[-1])}")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()
