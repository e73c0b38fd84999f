"""PNG of a scaling fit: the points against the law, and (for loss laws) the compute-optimal frontier."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forecaster.errors import InputError
from forecaster.scaling.fit import ScalingFit
from forecaster.scaling.laws import LossLaw
from forecaster.scaling.points import ScalingPoints


def plot_fit(fit: ScalingFit, points: ScalingPoints, path: str | Path, dpi: int = 110) -> None:
    """Write a two-panel PNG: fitted vs observed, and the law along compute (or loss) with its band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    rows = fit.samples if fit.samples is not None and len(fit.samples) > 1 else None
    law = fit.scaling_law
    obs, pred = law.observed(points), law.predict(fit.theta, *law.inputs(points, fit.units))
    if isinstance(law, LossLaw):
        uN, uD = fit.units["N"], fit.units["D"]
        sc = ax2.scatter(points.C, points.loss, c=np.log10(points.N), s=14, cmap="viridis", label="runs")
        fig.colorbar(sc, ax=ax2, label="log10 N")
        C = np.geomspace(points.C.min() / 3, points.C.max() * 100, 200)
        with np.errstate(all="ignore"):
            n, d = law.split(fit.theta, C / (uN * uD))
            ax2.plot(C, law.predict(fit.theta, n, d), color="black", label="compute-optimal frontier")
            if rows is not None:
                n_r, d_r = law.split(rows[:, None, :], C[None, :] / (uN * uD))  # (replicates, C)
                band = np.nanquantile(law.predict(rows[:, None, :], n_r, d_r), [0.05, 0.95], axis=0)
                ax2.fill_between(C, *band, color="grey", alpha=0.3, label="90% bootstrap band")
        ax2.set_xscale("log")
        ax2.set_xlabel("compute C = 6ND (FLOPs)")
        ax2.set_ylabel("loss")
    else:  # a law whose input is the loss: drawn along it
        x = np.linspace(points.loss.min() * 0.9, points.loss.max() * 1.05, 200)
        ax2.scatter(points.loss, obs, s=14, color="tab:blue", label="runs")
        ax2.plot(x, law.predict(fit.theta, x), color="black", label="fit")
        if rows is not None:
            band = law.predict(rows[:, None, :], x[None, :])  # (replicates, x)
            ax2.fill_between(x, *np.quantile(band, [0.05, 0.95], axis=0), color="grey", alpha=0.3,
                             label="90% bootstrap band")
        ax2.set_xlabel("loss")
        ax2.set_ylabel(f"downstream {law.predicts}")
    label = law.predicts
    if obs is None:
        raise InputError("nothing to plot")
    lim = [min(obs.min(), pred.min()), max(obs.max(), pred.max())]
    ax1.plot(lim, lim, color="grey", lw=1)
    ax1.scatter(obs, pred, s=12)
    ax1.set_xlabel(f"observed {label}")
    ax1.set_ylabel(f"fitted {label}")
    params = ", ".join(f"{k}={v:.4g}" for k, v in fit.params.items())
    ax1.set_title(f"{fit.law} ({fit.objective})", fontsize=10)
    ax2.set_title(params, fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(str(path))
    except OSError as exc:
        raise InputError(f"cannot write plot {path}: {exc}") from None
