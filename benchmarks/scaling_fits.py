"""Reproduce published scaling-law fits (docs/laws.md §2, scaling laws) and time the batched bootstrap.

    python benchmarks/scaling_fits.py [--boot 1000] [--baseline 50] [--hoffmann] [--workdir DIR]

1. Epoch's Chinchilla refit (Besiroglu et al. 2024): 240 points, Huber(1e-3) on log loss, summed.
2. The 217-point variable-projection fit (FLOP < 1e21, N in millions, D in billions, MSE on raw loss).
3. Gadre et al. 2024: over-training law on 5 small RedPajama runs, C4-eval loss; the downstream
   (17-task average top-1 error) law on those plus the 1.4B M=20 run; extrapolation errors at 1.4B,
   M=640 and 6.9B, M=20.
Timing: the point fit, then 1,000 bootstrap refits in one batched program, against a per-replicate
scipy loop (least_squares / L-BFGS-B from the point fit) over --baseline replicates in the same process.
The prepared CSVs are written to --workdir with the equivalent `forecast scaling fit` commands.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares, minimize

from forecaster.scaling import ScalingPoints, fit_scaling
from forecaster.scaling.laws import chinchilla as ch
from forecaster.scaling.laws import downstream as dsl
from forecaster.scaling.laws import overtrain as ot
from forecaster.scaling.bootstrap import replicate_weights

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scaling"
TOL = {"E": 0.002, "alpha": 0.003, "beta": 0.003}
EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
EPOCH_SE = {"E": 0.03, "A": 125, "B": 1293, "alpha": 0.015, "beta": 0.021}
VARPRO_217 = {"E": 1.9051, "A": 4.0005, "B": 1.0509, "alpha": 0.3511, "beta": 0.4587, "RSS": 0.062414}
GADRE = {("open_lm_1b", 32.0): (0.7103, 3.6365), ("open_lm_7b", 1.0): (0.7320, 0.0464)}


def epoch_points() -> ScalingPoints:
    """Epoch's 245 points less the 5 highest losses (their filter), D = FLOP / 6N."""
    with (DATA / "epoch_chinchilla.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = np.sort(np.argsort(L)[:-5])
    return ScalingPoints.from_arrays(N=N[keep], C=C[keep], loss=L[keep])


def write_csv(path: Path, pts: ScalingPoints, error: bool = False) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["N", "D", "loss"] + (["error"] if error else []))
        for i in range(len(pts)):
            w.writerow([repr(float(pts.N[i])), repr(float(pts.D[i])), repr(float(pts.loss[i]))]
                      + ([repr(float(pts.error[i]))] if error else []))


def check(name: str, got: dict[str, float], want: dict[str, float]) -> bool:
    ok = True
    for k, tol in TOL.items():
        d = abs(got[k] - want[k])
        ok &= d <= tol
        print(f"  {name}: {k} {got[k]:.4f} vs published {want[k]:.4f} (|diff| {d:.4f}, tolerance {tol}) "
              f"{'ok' if d <= tol else 'FAIL'}")
    return ok


def show(fit) -> None:
    for k, v in fit.params.items():
        iv = fit.intervals.get(k)
        se = fit.stderr.get(k)
        extra = f"  95% [{iv[0]:.5g}, {iv[1]:.5g}]  se {se:.4g}" if iv else ""
        print(f"    {k:<6} {v:.6g}{extra}")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def baseline_mse(pts: ScalingPoints, theta0: np.ndarray, units, n_rep: int, seed: int) -> float:
    """Seconds for n_rep bootstrap refits by scipy least_squares, one replicate at a time."""
    w = replicate_weights(len(pts), n_rep, seed, torch.device("cpu"))[1:].numpy()
    N, D, y = pts.N / units[0], pts.D / units[1], pts.loss
    t0 = time.perf_counter()
    for r in range(n_rep):
        sw = np.sqrt(w[r])
        least_squares(lambda t: sw * (ch.predict(t, N, D) - y), theta0, method="lm", max_nfev=20000)
    return time.perf_counter() - t0


def baseline_huber(pts: ScalingPoints, theta0: np.ndarray, n_rep: int, seed: int) -> float:
    """Seconds for n_rep bootstrap refits by scipy L-BFGS-B (analytic gradient), one replicate at a time."""
    w = replicate_weights(len(pts), n_rep, seed, torch.device("cpu"))[1:].numpy()
    lN, lD, ly = np.log(pts.N), np.log(pts.D), np.log(pts.loss)
    x0 = np.array([np.log(theta0[0]), np.log(theta0[1]), np.log(theta0[2]), theta0[3], theta0[4]])
    delta = ch.HUBER_DELTA

    def obj(x, wr):
        t = np.stack((x[1] - x[3] * lN, x[2] - x[4] * lD, np.full_like(lN, x[0])))
        m = t.max(0)
        ex = np.exp(t - m)
        s = ex.sum(0)
        r = m + np.log(s) - ly
        p = ex / s
        a = np.abs(r)
        f = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        dr = wr * np.where(a <= delta, r, delta * np.sign(r))
        g = np.array([(dr * p[2]).sum(), (dr * p[0]).sum(), (dr * p[1]).sum(),
                      -(dr * p[0] * lN).sum(), -(dr * p[1] * lD).sum()])
        return (wr * f).sum(), g

    t0 = time.perf_counter()
    for r in range(n_rep):
        minimize(obj, x0, args=(w[r],), jac=True, method="L-BFGS-B", options={"maxiter": 15000})
    return time.perf_counter() - t0


def baseline_loop(pts: ScalingPoints, objective: str, units, n_rep: int, seed: int, device) -> float:
    """Seconds for n_rep bootstrap refits by the same fitter called once per resampled data set."""
    w = replicate_weights(len(pts), n_rep, seed, torch.device("cpu"))[1:].numpy().astype(int)
    t0 = time.perf_counter()
    for r in range(n_rep):
        idx = np.repeat(np.arange(len(pts)), w[r])
        fit_scaling(pts.subset(idx), objective=objective, n_boot=0, units=units, device=device)
    return time.perf_counter() - t0


def chinchilla_section(args, work: Path) -> bool:
    pts = epoch_points()
    write_csv(work / "epoch240.csv", pts)
    small = pts.subset(pts.C < 1e21)
    write_csv(work / "epoch217.csv", small)
    ok = True

    print(f"\n[1] Epoch's Chinchilla refit: {len(pts)} points, Huber(1e-3) on log loss (sum)")
    print(f"    forecast scaling fit --input {work / 'epoch240.csv'} --law chinchilla --objective huber-log "
          f"--boot {args.boot}")
    point, t_point = timed(lambda: fit_scaling(pts, objective="huber-log", n_boot=0, device=args.device))
    boot, t_boot = timed(lambda: fit_scaling(pts, objective="huber-log", n_boot=args.boot, device=args.device,
                                             budgets=[5.76e23]))
    show(boot)
    print(f"    objective (Huber sum) {point.objective_value:.10g}")
    ok &= check("huber-log", point.params, EPOCH)
    print("    bootstrap standard errors vs Epoch's: " + ", ".join(
        f"{k} {boot.stderr[k]:.3g} ({EPOCH_SE[k]})" for k in EPOCH_SE))
    opt = boot.derived["compute_optimal"][0]
    print(f"    compute-optimal at 5.76e23 FLOPs: N {opt['N_opt']['value']:.3g} "
          f"[{opt['N_opt']['lo']:.3g}, {opt['N_opt']['hi']:.3g}], D {opt['D_opt']['value']:.3g}, "
          f"tokens/param {opt['tokens_per_param']['value']:.1f} "
          f"[{opt['tokens_per_param']['lo']:.1f}, {opt['tokens_per_param']['hi']:.1f}]")
    t_base = baseline_huber(pts, point.theta, args.baseline, 1) if args.baseline else float("nan")
    per_b, per_s = t_boot / args.boot, t_base / max(args.baseline, 1)
    print(f"    time: point fit {t_point:.2f} s; {args.boot} bootstrap refits batched {t_boot:.2f} s "
          f"({1e3 * per_b:.1f} ms/refit); scipy L-BFGS-B loop {t_base:.2f} s for {args.baseline} "
          f"({1e3 * per_s:.1f} ms/refit): {per_s / per_b:.1f}x")
    t_loop = baseline_loop(pts, "huber-log", (1.0, 1.0), args.baseline, 1, args.device) if args.baseline else float("nan")
    per_l = t_loop / max(args.baseline, 1)
    print(f"    same fitter one replicate per call: {t_loop:.2f} s for {args.baseline} ({1e3 * per_l:.1f} ms/refit): "
          f"batching {per_l / per_b:.1f}x")

    if args.hoffmann:
        y = torch.as_tensor(pts.loss, dtype=torch.float64)
        (theta, f, allf), t_h = timed(lambda: ch.fit_hoffmann_grid(pts.N, pts.D, y, torch.ones_like(y),
                                                                   max_iter=300))
        hits = int((allf <= f * (1 + 1e-6)).sum())
        print(f"    cross-check, Hoffmann's 4,500 L-BFGS starts (batched, 300 iterations): E {theta[0]:.5f} "
              f"A {theta[1]:.2f} B {theta[2]:.2f} alpha {theta[3]:.5f} beta {theta[4]:.5f}, objective "
              f"{float(f):.10g} ({hits} starts reach it; VarPro start: {point.objective_value:.10g}), {t_h:.1f} s")

    print(f"\n[2] Variable projection, {len(small)} points with FLOP < 1e21, N in millions, D in billions, "
          "MSE on raw loss")
    print(f"    forecast scaling fit --input {work / 'epoch217.csv'} --law chinchilla --objective mse "
          f"--n-unit 1e6 --d-unit 1e9 --boot {args.boot}")
    units = (1e6, 1e9)
    point, t_point = timed(lambda: fit_scaling(small, objective="mse", n_boot=0, units=units, device=args.device))
    boot, t_boot = timed(lambda: fit_scaling(small, objective="mse", n_boot=args.boot, units=units,
                                             device=args.device))
    show(boot)
    ok &= check("mse", point.params, VARPRO_217)
    for k in ("A", "B"):
        print(f"  mse: {k} {point.params[k]:.4f} vs published {VARPRO_217[k]:.4f}")
    print(f"  mse: RSS {point.rss:.6f} vs published {VARPRO_217['RSS']:.6f}")
    ok &= abs(point.rss - VARPRO_217["RSS"]) < 5e-6
    t_base = baseline_mse(small, point.theta, units, args.baseline, 1) if args.baseline else float("nan")
    per_b, per_s = t_boot / args.boot, t_base / max(args.baseline, 1)
    print(f"    time: point fit {t_point:.2f} s; {args.boot} bootstrap refits batched {t_boot:.2f} s "
          f"({1e3 * per_b:.1f} ms/refit); scipy least_squares loop {t_base:.2f} s for {args.baseline} "
          f"({1e3 * per_s:.1f} ms/refit, started at the optimum): {per_s / per_b:.1f}x")
    t_loop = baseline_loop(small, "mse", units, args.baseline, 1, args.device) if args.baseline else float("nan")
    per_l = t_loop / max(args.baseline, 1)
    print(f"    same fitter one replicate per call: {t_loop:.2f} s for {args.baseline} ({1e3 * per_l:.1f} ms/refit): "
          f"batching {per_l / per_b:.1f}x")
    return bool(ok)


def gadre_section(args, work: Path) -> bool:
    with (DATA / "gadre_runs_flat.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "rpj"]
    by = {(r["model"], float(r["cc_mult"])): r for r in rows}
    small = ["d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8"]
    # Their Table 2 default: the four small models at M = 20 plus the smallest at M = 320.
    fit_rows = [by[(m, 1.0)] for m in small] + [by[("d=96_l=8_h=4", 16.0)]]

    def pts(rs, error=False):
        N = np.array([float(r["N"]) for r in rs])
        M = np.array([float(r["M"]) for r in rs])
        return ScalingPoints(N=N, D=N * M, loss=np.array([float(r["loss_c4_val"]) for r in rs]),
                             error=np.array([float(r["err_avg_subset"]) for r in rs]) if error else None)

    loss_pts = pts(fit_rows)
    err_pts = pts(fit_rows + [by[("open_lm_1b", 1.0)]], error=True)  # the error law also sees 1.4B, M=20
    write_csv(work / "gadre_loss5.csv", loss_pts)
    write_csv(work / "gadre_err6.csv", err_pts, error=True)
    print("\n[3] Gadre et al.: over-training law on 5 RedPajama runs (C4-eval loss), error law on 6")
    print(f"    forecast scaling fit --input {work / 'gadre_loss5.csv'} --law overtrain --objective mse "
          f"--boot 0 --output overtrain.json")
    print(f"    forecast scaling fit --input {work / 'gadre_err6.csv'} --law downstream --boot 0 "
          "--output downstream.json")
    print("    forecast scaling predict --fit overtrain.json --n 1439795200 --m 640 --error-fit downstream.json")
    lf, t_l = timed(lambda: fit_scaling(loss_pts, law="overtrain", n_boot=0, device=args.device))
    ef, t_e = timed(lambda: fit_scaling(err_pts, law="downstream", n_boot=0, device=args.device))
    show(lf)
    show(ef)
    ok = True
    for (model, mult), (want_l, want_e) in GADRE.items():
        r = by[(model, mult)]
        N = float(r["N"])
        pred = lf.predict(N=N, D=N * 20 * mult)["value"]
        err = ef.predict(loss=pred)["value"]
        gl, ge = float(r["loss_c4_val"]), float(r["err_avg_subset"])
        rl, re = 100 * abs(pred - gl) / gl, 100 * abs(err - ge) / ge
        ok &= abs(rl - want_l) < 0.01 and abs(re - want_e) < 0.01
        print(f"    {model} M={20 * mult:g}: loss {pred:.4f} vs {gl:.4f}: {rl:.4f}% (published {want_l}%); "
              f"17-task error {err:.4f} vs {ge:.4f}: {re:.4f}% (published {want_e}%)")
    boot, t_b = timed(lambda: fit_scaling(loss_pts, law="overtrain", n_boot=args.boot, device=args.device))
    print(f"    time: over-training fit {t_l:.2f} s, error-law fit {t_e:.2f} s, {args.boot} bootstrap refits "
          f"{t_b:.2f} s (eta 95% [{boot.intervals['eta'][0]:.4f}, {boot.intervals['eta'][1]:.4f}] from 5 points)")
    return bool(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=50, help="scipy refits timed for the per-refit baseline")
    ap.add_argument("--hoffmann", action="store_true", help="also run Hoffmann's 4,500-start grid (minutes)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="scaling-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CSVs in {work}")
    ok = chinchilla_section(args, work)
    ok &= gadre_section(args, work)
    print("\nall reproduced within tolerance" if ok else "\nSOME TARGETS MISSED")


if __name__ == "__main__":
    main()
