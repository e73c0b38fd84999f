"""Speed (shared docs/evaluation.md): 1,000 independent runs x 500 observed + 300 horizon rows in one CSV.

Times the whole `forecast predict` process (start-up, CSV in, batched fit, bands, CSV out) against
a per-run `scipy.optimize.least_squares` loop fitting the same 4-parameter momentum law (L0, A,
alpha, C; lam fixed at 0.999) with the same objective (Huber on log loss, delta 1e-3), in the same
script on the same machine. The loop is timed in-process without any I/O, which favours it; so is
the core alone (`Forecaster.fit` and `predict` on histories already in memory), for a like-for-like
ratio. Both
forecasts of the final value are checked against the generating curve so neither wins by doing less.

With --profile, also the forecast process's time per phase ($FORECASTER_PROFILE,
forecaster/phases.py; exclusive times, so a phase's nested phases are not in its figure), in wall
seconds or, with --profile-clock cpu, in CPU seconds (steadier on a shared machine).

Usage: python benchmarks/speed.py [--runs 1000] [--law momentum] [--device cpu] [--profile [--profile-clock cpu]] [--no-core]
Writes markdown to stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

REPO = Path(__file__).resolve().parents[1]
LAM = 0.999
EVERY = 10  # a row (metric and LR) every 10 steps
OBSERVED, HORIZON = 500, 300
WARMUP = 100


def schedules(n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-step LR (n, T+1): linear warmup, then cosine, WSD or linear decay, random peaks."""
    total = (OBSERVED + HORIZON) * EVERY
    s = np.arange(total + 1)[None, :]
    peak = rng.uniform(3e-4, 3e-3, (n, 1))
    kind = rng.integers(0, 3, (n, 1))
    p = np.clip((s - WARMUP) / (total - WARMUP), 0, 1)
    cosine = 0.5 * (1 + np.cos(np.pi * p))
    d0 = rng.uniform(0.6, 0.9, (n, 1))
    wsd = np.where(p > d0, 1 - (p - d0) / (1 - d0), 1.0)
    linear = 1 - p
    frac = np.where(kind == 0, cosine, np.where(kind == 1, wsd, linear))
    lr = peak * (0.01 + 0.99 * frac)
    return np.where(s < WARMUP, peak * s / WARMUP, lr)


def features(lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S1 (forward area) and S2 (momentum annealing area, warmup counted at the peak) per step."""
    s1 = np.cumsum(lr, axis=-1)
    eta = lr.copy()
    top = np.argmax(lr, axis=-1)
    idx = np.arange(lr.shape[-1])
    eta = np.where(idx[None, :] < top[:, None], lr.max(-1, keepdims=True), eta) if lr.ndim == 2 else \
        np.where(idx < top, lr.max(), eta)
    d = np.zeros_like(eta)
    d[..., 1:] = eta[..., :-1] - eta[..., 1:]
    return s1, np.cumsum(lfilter([1.0], [1.0, -LAM], d, axis=-1), axis=-1)


def make_csv(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """Write the benchmark CSV; returns the true final values (noise-free)."""
    rng = np.random.default_rng(seed)
    lr = schedules(n, rng)
    s1, s2 = features(lr)
    L0 = rng.uniform(1.8, 3.0, (n, 1))
    A = rng.uniform(0.3, 0.8, (n, 1))
    alpha = rng.uniform(0.3, 0.6, (n, 1))
    C = rng.uniform(0.2, 0.6, (n, 1)) / lr.max(-1, keepdims=True) * 3e-4
    loss = L0 + A * np.maximum(s1, 1e-12) ** -alpha - C * s2
    steps = np.arange(1, OBSERVED + HORIZON + 1) * EVERY
    noisy = loss[:, steps] * (1 + 0.003 * rng.standard_normal((n, len(steps))))
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "group", "step", "lr", "loss"])
        for i in range(n):
            name = f"run{i:04d}"
            lr_i = lr[i, steps]
            for j, s in enumerate(steps):
                w.writerow([name, name, s, f"{lr_i[j]:.8g}", f"{noisy[i, j]:.6f}" if j < OBSERVED else ""])
    return loss[:, steps[-1]]


def read_rows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, lr, loss) as (n, rows) arrays from the benchmark CSV (loss NaN on horizon rows)."""
    with path.open() as fh:
        rows = list(csv.reader(fh))[1:]
    per = OBSERVED + HORIZON
    arr = np.array([[r[2], r[3], r[4] or "nan"] for r in rows], dtype=float).reshape(-1, per, 3)
    return arr[..., 0].astype(np.int64), arr[..., 1], arr[..., 2]


def scipy_loop(steps: np.ndarray, lr_rows: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """The baseline: per run, rebuild the per-step LR, fit with least_squares, predict the final value."""
    finals = np.empty(len(steps))
    for i in range(len(steps)):
        st, y = steps[i, :OBSERVED], loss[i, :OBSERVED]
        grid = np.arange(steps[i, -1] + 1)
        lr = np.interp(grid, steps[i], lr_rows[i])
        lr[grid < st[0]] = lr_rows[i, 0] * grid[grid < st[0]] / st[0]  # unlogged warmup: linear from 0
        s1, s2 = features(lr)
        S1, S2 = s1[st], s2[st]

        def resid(p, S1=S1, S2=S2, y=y):
            pred = p[0] + p[1] * S1 ** -p[2] - p[3] * S2
            return np.log(np.maximum(pred, 1e-12)) - np.log(y)

        x0 = np.array([0.8 * y.min(), 0.5, 0.5, 0.0])
        fit = least_squares(resid, x0, loss="huber", f_scale=1e-3,
                            bounds=([0, 0, 0, 0], [np.inf, np.inf, 3.0, np.inf]))
        p = fit.x
        finals[i] = p[0] + p[1] * s1[-1] ** -p[2] - p[3] * s2[-1]
    return finals


def _hwm_mib(pid: int) -> float:
    """Peak resident memory of a live process so far (Linux /proc; 0 elsewhere or once it ended)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--law", default="momentum", help="--law passed to forecast predict")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="print the forecast process's time per phase")
    ap.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--no-core", action="store_true",
                    help="skip the in-process core timing (it holds every run at once: at 10,000 runs "
                         "that is the script's peak memory, not the forecast process's)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for the forecast process (default: inherited); on a loaded "
                         "machine torch's intra-op threads contend and 1 can be much faster")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "runs.csv", Path(tmp) / "forecast.csv"
        truth = make_csv(src, args.runs, args.seed)
        prof = Path(tmp) / "phases.json"
        if args.profile:
            env["FORECASTER_PROFILE"] = str(prof)
            env["FORECASTER_PROFILE_CLOCK"] = args.profile_clock
        cmd = [sys.executable, "-m", "forecaster.cli", "predict", "--input", str(src), "--output", str(out),
               "--law", args.law, "--device", args.device]
        t0 = time.perf_counter()
        err_path = Path(tmp) / "stderr.txt"
        err_fh = err_path.open("w")  # a file, not a pipe: nothing can block the child while it is polled
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_fh, text=True, cwd=REPO, env=env)
        # the child's own high-water mark: RUSAGE_CHILDREN's maxrss can count the pages of this
        # script (gigabytes at 10,000 runs) that the child shared before it exec'd
        mem_fc = 0.0
        while proc.poll() is None:
            mem_fc = max(mem_fc, _hwm_mib(proc.pid))
            time.sleep(0.1)
        err_fh.close()
        stderr = err_path.read_text()
        t_fc = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"forecast predict failed ({proc.returncode}): {stderr.strip()}")
        phase_s = json.loads(prof.read_text()) if args.profile else {}
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        mem_fc = mem_fc or usage.ru_maxrss / 1024  # MiB (Linux: KiB)
        cpu_fc = usage.ru_utime + usage.ru_stime
        with out.open() as fh:
            rows = list(csv.DictReader(fh))
        final_fc = {r["run"]: float(r["p50"]) for r in rows}  # the last row of each run wins
        fc_final = np.array([final_fc.get(f"run{i:04d}", np.nan) for i in range(args.runs)])

        steps, lr_rows, loss = read_rows(src)
        mem_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0, c0 = time.perf_counter(), time.process_time()
        sp_final = scipy_loop(steps, lr_rows, loss)
        t_sp, cpu_sp = time.perf_counter() - t0, time.process_time() - c0
        mem_sp = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # the core alone, in this process: histories in memory, fit and bands timed (no start-up, no I/O)
        sys.path.insert(0, str(REPO))
        from forecaster.csvio import read_histories
        from forecaster.forecast import Forecaster

        t_core = float("nan")
        if not args.no_core:
            histories, _ = read_histories(src)
            t0 = time.perf_counter()
            Forecaster(law=args.law, device=None if args.device == "auto" else args.device).fit(histories).predict()
            t_core = time.perf_counter() - t0

    def err(x: np.ndarray) -> str:
        e = 100 * np.abs(x / truth - 1)
        return f"{np.nanmedian(e):.3f} / {np.nanmax(e):.3f}"

    print(f"## Speed: {args.runs} runs x {OBSERVED} observed + {HORIZON} horizon rows, one group each\n")
    print(f"Command: `python benchmarks/speed.py {' '.join(sys.argv[1:])}` on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}; forecast device: {args.device}, "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}\n")
    print("| method | wall s | CPU s | peak RSS MiB | final-value error vs truth, median / worst % |")
    print("|---|---|---|---|---|")
    print(f"| `forecast predict --law {args.law}` (whole process: start-up, CSV in/out, fit, bands) | "
          f"{t_fc:.1f} | {cpu_fc:.1f} | {mem_fc:.0f} | {err(fc_final)} |")
    print(f"| per-run scipy least_squares loop, same law and objective (fit only, in-process) | {t_sp:.1f} | "
          f"{cpu_sp:.1f} | {mem_sp:.0f} (script; {mem_before:.0f} before the loop) | {err(sp_final)} |")
    if not args.no_core:
        print(f"| `Forecaster(law={args.law!r}).fit(...).predict()` in-process (fit and bands only) | "
              f"{t_core:.1f} | | | |")
    # CPU seconds move less than wall seconds when other jobs share the machine
    print(f"\nRatio (scipy loop / forecast process): **{t_sp / t_fc:.1f}x** wall, **{cpu_sp / cpu_fc:.1f}x** CPU; "
          + ("" if args.no_core else f"scipy loop / in-process fit and bands: **{t_sp / t_core:.1f}x**; ")
          + f"forecast runs skipped: {int(np.isnan(fc_final).sum())}.")
    if phase_s:
        whole, total = (cpu_fc, phase_s.pop("predict cpu")) if args.profile_clock == "cpu" else (t_fc, phase_s["predict total"])
        phase_s.pop("predict total")
        phase_s.pop("predict cpu", None)
        rows = sorted(phase_s.items(), key=lambda kv: -kv[1])
        # CPU clock: the process's CPU seconds when predict ended include everything before it
        before = whole - total if args.profile_clock == "wall" else total - sum(phase_s.values())
        rows += ([("other (inside predict)", total - sum(phase_s.values()))] if args.profile_clock == "wall" else []) \
            + [("start-up (interpreter, imports)" + (", and other" if args.profile_clock == "cpu" else ""),
                before if args.profile_clock == "wall" else whole - sum(phase_s.values()))]
        print(f"\n| phase of the forecast process ({args.profile_clock} clock) | s | share |\n|---|---|---|")
        for name, s in rows:
            print(f"| {name} | {s:.2f} | {100 * s / whole:.0f} % |")
        print(f"| whole process | {whole:.2f} | 100 % |")
    print(f"\nforecast stderr: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")


if __name__ == "__main__":
    main()
