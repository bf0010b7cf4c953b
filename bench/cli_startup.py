"""CLI start-up: `workbench --help` and `workbench snapshots list` beside a bare `python -c pass`.

    python bench/cli_startup.py [--repeat 10]

The ratio to a bare interpreter start shows what our imports cost; heavy
libraries (torch, transformers, pandas) must never load for these commands.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def _time(cmd: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    store = tempfile.mkdtemp()
    cases = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "workbench --help": [sys.executable, "-m", "ui.cli", "--help"],
        "workbench snapshots list": [sys.executable, "-m", "ui.cli", "--store", store, "snapshots", "list"],
    }
    base = None
    print(f"| {'command':<28}| {'median s':>9} | {'x baseline':>10} |")
    print(f"|{'-' * 29}|{'-' * 11}|{'-' * 12}|")
    for name, cmd in cases.items():
        t = _time(cmd, args.repeat)
        base = base or t
        print(f"| {name:<28}| {t:>9.3f} | {t / base:>9.1f}x |")


if __name__ == "__main__":
    main()
