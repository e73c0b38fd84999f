"""`make bench`: the quick benchmarks, one after another, in a couple of minutes on two cores.

Each runs as its own process, as a user would run it (commands in docs/benchmarks.md). Those that
read the shared data sets (../shared/data next to this checkout) are skipped, with the path they
need, where that folder is missing; the others build their data. The long ones (the full Luo
backtest, the early-stop replays, the 200-run MLflow sync) are left to be run by hand.

    python benchmarks/run_all.py [--only speed,pku_cases] [--list] [--timeout 600]

Exit code: 0 when every benchmark that ran succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"

# (name, arguments after the script, shared data it reads or None); small settings where the
# script's defaults would take minutes
QUICK = [
    ("speed", ["speed.py", "--runs", "200"], None),
    ("scaling_sync", ["scaling_sync.py"], None),
    ("cooldown_cases", ["cooldown_cases.py"], SHARED / "lr_curves" / "modded_nanogpt_speedrun"),
    ("luo_cases", ["luo_cases.py", "--in-sample"], SHARED / "lr_curves" / "luo2025_multipowerlaw"),
    ("pku_cases", ["pku_cases.py"], SHARED / "lr_curves" / "pku_tdlt_gpt100M_20B"),
    # the two small sets of the dev protocol; Luo and modded take minutes (docs/benchmarks.md (d))
    ("dev_cases", ["dev_cases.py", "--sets", "pku,speedrun"], SHARED / "lr_curves"),
    ("scaling_fits", ["scaling_fits.py", "--boot", "100", "--baseline", "5"], SHARED / "scaling"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated names of the benchmarks to run (see --list)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and the data each needs")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one benchmark may take")
    args = ap.parse_args()
    chosen = QUICK
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {n for n, _, _ in QUICK})
        if unknown:
            print(f"error: unknown benchmark {', '.join(unknown)}; known: {', '.join(n for n, _, _ in QUICK)}",
                  file=sys.stderr)
            return 2
        chosen = [b for b in QUICK if b[0] in names]
    if args.list:
        for name, argv, data in chosen:
            print(f"{name:<15} python benchmarks/{' '.join(argv)}" + (f"   (reads {data})" if data else ""))
        return 0

    results = []
    for name, argv, data in chosen:
        if data is not None and not data.exists():
            print(f"\n## {name}: skipped, needs the shared data at {data} (not found)", flush=True)
            results.append((name, "skipped", 0.0))
            continue
        print(f"\n## {name}: python benchmarks/{' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], cwd=HERE.parent,
                                  timeout=args.timeout)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"failed (over {args.timeout:g} s)"
        results.append((name, status, time.perf_counter() - t0))

    print("\n## summary")
    for name, status, secs in results:
        print(f"  {name:<15} {status:<22} {secs:6.1f} s")
    return 1 if any(s.startswith("failed") for _, s, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
