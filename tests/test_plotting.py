"""The forecast PNG attached to forecast runs: wide, linear, framed on the band, titled with the result."""

from __future__ import annotations

import struct

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401 - the renderer must be there

from forecaster import plotting
from forecaster.histories import RunForecast, RunHistory


def _case():
    steps = np.arange(0, 2001, 50)
    hist = RunHistory("run-a", steps, 2.0 + 8.0 / (1 + steps / 100.0))
    fs = np.arange(2050, 4001, 50)
    p50 = 2.0 + 8.0 / (1 + fs / 100.0)
    return hist, RunForecast("run-a", "g", fs, np.full(len(fs), 1e-4), p50, p50 - 0.01, p50 + 0.01, law="momentum")


def _axes(monkeypatch):
    """Capture the Axes the renderer draws on."""
    from matplotlib.figure import Figure

    seen = []
    real = Figure.add_subplot

    def spy(self, *a, **k):
        ax = real(self, *a, **k)
        seen.append(ax)
        return ax

    monkeypatch.setattr(Figure, "add_subplot", spy)
    return seen


def test_png_is_wide_linear_and_titled_with_the_final(monkeypatch) -> None:
    hist, fc = _case()
    seen = _axes(monkeypatch)
    png = plotting.forecast_png(hist, fc, title="run-a")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1200 and height >= 500
    (ax,) = seen
    assert ax.get_yscale() == "linear"
    title = ax.get_title()
    assert "run-a" in title and f"{fc.final:.4g}" in title and f"{fc.p10[-1]:.4g}-{fc.p90[-1]:.4g}" in title
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("band" in lab for lab in labels) and any("forecast" in lab for lab in labels)
    # framed on the tail and the band: the early descent (10.0 at step 0) is cut off at the top
    lo, hi = ax.get_ylim()
    assert lo < fc.p10.min() and hi > fc.p90.max() and hi < hist.values[0]


def test_log_scale_stays_available(monkeypatch) -> None:
    hist, fc = _case()
    seen = _axes(monkeypatch)
    plotting.forecast_png(hist, fc, log_scale=True)
    assert seen[0].get_yscale() == "log"
