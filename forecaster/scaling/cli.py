"""`forecast scaling fit` and `forecast scaling predict`: scaling laws from a CSV of finished runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from forecaster.errors import InputError, one_line_errors
from forecaster.scaling import laws


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _group_help() -> str:
    rows = [f"  {law.name:<11} {law.formula:<39} ({law.reference})" for law in map(laws.get, laws.available())]
    return ("Fit cross-run scaling laws and predict bigger runs.\n\n\b\nLaws (docs/laws.md §2, scaling laws):\n"
            + "\n".join(rows))


def _objective_help() -> str:
    by: dict[str, list[str]] = {}
    for n in laws.available():
        by.setdefault(laws.get(n).default_objective, []).append(n)
    return ("huber-log: Huber(1e-3) on log loss, summed (Hoffmann/Epoch); mse: squared error on raw loss, solved "
            "exactly by variable projection. Default: " + ", ".join(f"{o} for {_and(ns)}" for o, ns in by.items())
            + " (as their authors fit them).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, help=_group_help())
def scaling() -> None:
    """The `forecast scaling` group; its help (above) lists the registered laws."""


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def _band_line(name: str, b: dict[str, Any], pct: int) -> str:
    text = f"  {name:<17} {_fmt(b['value']):>12}"
    if b.get("lo") is not None:
        text += f"   {pct}% [{_fmt(b['lo'])}, {_fmt(b['hi'])}]   se {_fmt(b.get('stderr'))}"
    return text


@scaling.command("fit")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="CSV with columns N, D (or C = 6ND, or M = D/N), loss; optional sigma (loss std) "
                   "and error (downstream average error).")
@click.option("--law", type=click.Choice(laws.available()), default="chinchilla", show_default=True,
              help="Which law to fit.")
@click.option("--objective", type=click.Choice(laws.OBJECTIVES), default=None, help=_objective_help())
@click.option("--boot", "n_boot", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap refits (all batched in one program); 0 for the point fit only.")
@click.option("--level", type=float, default=0.95, show_default=True, help="Interval level.")
@click.option("--budget", "budgets", type=float, multiple=True,
              help="Compute budget C (FLOPs, C = 6ND) to report the compute-optimal N, D and tokens "
                   "per parameter for; repeatable.")
@click.option("--n-unit", type=float, default=1.0, show_default=True,
              help="Divide N by this before fitting (e.g. 1e6: A refers to N in millions).")
@click.option("--d-unit", type=float, default=1.0, show_default=True,
              help="Divide D by this before fitting (e.g. 1e9: B refers to D in billions).")
@click.option("--n-col", default=None, help="Column holding N (default: N, params, ...).")
@click.option("--d-col", default=None, help="Column holding D (default: D, tokens, ...).")
@click.option("--c-col", default=None, help="Column holding compute C = 6ND (used when no D column).")
@click.option("--m-col", default=None, help="Column holding tokens per parameter M (used when no D or C).")
@click.option("--loss-col", default=None, help="Column holding the loss (default: loss).")
@click.option("--sigma-col", default=None, help="Column holding each loss's standard deviation.")
@click.option("--error-col", default=None, help="Column holding downstream error (downstream law).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap random seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Torch device (default: $FORECASTER_DEVICE, else CUDA when present).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the fit as JSON (with bootstrap samples, for `scaling predict --fit`).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON fit to this file.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG of the fit here.")
@one_line_errors
def fit_cmd(input_path: str, law: str, objective: str | None, n_boot: int, level: float,
            budgets: tuple[float, ...], n_unit: float, d_unit: float, n_col: str | None, d_col: str | None,
            c_col: str | None, m_col: str | None, loss_col: str | None, sigma_col: str | None,
            error_col: str | None, seed: int, device: str | None, as_json: bool, output: str | None,
            plot: str | None) -> None:
    """Fit a scaling law to a CSV of runs and print parameters with bootstrap intervals."""
    from forecaster.scaling.fit import fit_scaling
    from forecaster.scaling.points import read_csv

    sl = laws.get(law)
    points = read_csv(input_path, n_col=n_col, d_col=d_col, c_col=c_col, m_col=m_col, loss_col=loss_col,
                      sigma_col=sigma_col, error_col=error_col, need_size=sl.needs_size)
    if "error" in sl.needs and points.error is None:
        raise InputError(f"{input_path} has no error column for the {law} law (use --error-col)")
    try:
        result = fit_scaling(points, law=law, objective=objective, n_boot=n_boot, level=level, seed=seed,
                             device=device, units=(n_unit, d_unit), budgets=budgets)
    except RuntimeError as exc:  # e.g. --device cuda without CUDA
        raise InputError(str(exc)) from None
    doc = result.to_dict()
    if output:
        Path(output).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if plot:
        from forecaster.scaling.plot import plot_fit
        plot_fit(result, points, plot)
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    pct = round(100 * level)
    extra = f", {n_boot} bootstrap refits ({pct}% intervals)" if n_boot else ""
    click.echo(f"law {law}, objective {result.objective}, {result.n_points} points{extra}, "
               f"{result.seconds:.2f} s")
    if result.units != {"N": 1.0, "D": 1.0} and sl.needs_size:
        click.echo(f"units: N / {result.units['N']:g}, D / {result.units['D']:g}")
    for k, v in result.params.items():
        lo_hi = result.intervals.get(k)
        b = {"value": v, "lo": lo_hi[0] if lo_hi else None, "hi": lo_hi[1] if lo_hi else None,
             "stderr": result.stderr.get(k)}
        click.echo(_band_line(k, b, pct))
    click.echo(f"  objective {_fmt(result.objective_value)}   RSS (raw scale) {_fmt(result.rss)}")
    exps = result.derived.get("exponents")
    if exps:
        click.echo("compute-optimal exponents (N_opt ~ C^a, D_opt ~ C^b):")
        for k in ("a", "b"):
            click.echo(_band_line(k, exps[k], pct))
    for row in result.derived.get("compute_optimal", []):
        click.echo(f"compute-optimal at C = {row['C']:.4g} FLOPs:")
        for k in ("N_opt", "D_opt", "tokens_per_param", "loss"):
            click.echo(_band_line(k, row[k], pct))
    for note in result.notes:
        click.echo(f"note: {note}")
    if plot:
        click.echo(f"plot: {plot}")


@scaling.command("predict")
@click.option("--fit", "fit_path", required=True, type=click.Path(dir_okay=False),
              help="JSON written by `forecast scaling fit --json` (or --output).")
@click.option("--n", "n_params", type=float, default=None, help="Parameters N of the run to predict.")
@click.option("--d", "tokens", type=float, default=None, help="Tokens D of the run to predict.")
@click.option("--c", "compute", type=float, default=None, help="Compute C = 6ND instead of --d.")
@click.option("--m", "mult", type=float, default=None, help="Tokens per parameter M = D/N instead of --d.")
@click.option("--budget", "budgets", type=float, multiple=True,
              help="Compute budget C (FLOPs): print the compute-optimal N, D, tokens/param and loss.")
@click.option("--loss", type=float, default=None, help="Loss to map to downstream error (downstream law).")
@click.option("--error-fit", type=click.Path(dir_okay=False), default=None,
              help="A downstream-law fit: also map the predicted loss to downstream error.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def predict_cmd(fit_path: str, n_params: float | None, tokens: float | None, compute: float | None,
                mult: float | None, budgets: tuple[float, ...], loss: float | None, error_fit: str | None,
                as_json: bool) -> None:
    """Predict the loss of a run (N, D) or the compute-optimal split for a budget, with intervals."""
    from forecaster.scaling.fit import ScalingFit

    fit = ScalingFit.load(fit_path)
    out: dict[str, Any] = {"law": fit.law, "level": fit.level}
    if not fit.scaling_law.needs_size:
        if loss is None:
            raise InputError(f"this is a {fit.law}-law fit: give --loss")
        out["error"] = fit.predict(loss=loss)
    else:
        if loss is not None:
            raise InputError("--loss is for downstream-law fits; give --n with --d, --c or --m")
        if n_params is None and not budgets:
            raise InputError("give --n with --d, --c or --m for a run, or --budget for the compute-optimal split")
        if n_params is not None:
            if n_params <= 0:
                raise InputError("--n must be positive")
            given = [v for v in (tokens, compute, mult) if v is not None]
            if len(given) != 1:
                raise InputError("give exactly one of --d, --c or --m with --n")
            D = tokens if tokens is not None else (compute / (6 * n_params) if compute is not None else mult * n_params)
            if not D > 0:
                raise InputError("tokens D must be positive")
            run = {"N": n_params, "D": D, "C": 6 * n_params * D, "loss": fit.predict(N=n_params, D=D)}
            if error_fit:
                err = ScalingFit.load(error_fit)
                if err.scaling_law.predicts != "error":
                    raise InputError(f"--error-fit {error_fit} is a {err.law} fit, not a downstream one")
                run["error"] = err.predict(loss=run["loss"]["value"])
            out["run"] = run
        out["compute_optimal"] = [{"C": C, **fit.compute_optimal(C)} for C in budgets]
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    pct = round(100 * fit.level)
    if "error" in out:
        click.echo(f"downstream error at loss {loss:g}:")
        click.echo(_band_line("error", out["error"], pct))
    if "run" in out:
        r = out["run"]
        click.echo(f"run N = {r['N']:.4g}, D = {r['D']:.4g} (C = {r['C']:.4g}, D/N = {r['D'] / r['N']:.4g}):")
        click.echo(_band_line("loss", r["loss"], pct))
        if "error" in r:
            click.echo(_band_line("error", r["error"], pct))
    for row in out.get("compute_optimal", []):
        click.echo(f"compute-optimal at C = {row['C']:.4g} FLOPs:")
        for k in ("N_opt", "D_opt", "tokens_per_param", "loss"):
            click.echo(_band_line(k, row[k], pct))
