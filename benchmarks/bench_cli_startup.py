"""`mammography --help` wall time against a bare interpreter start, same run.

Goal: <= 0.3 s on 2 cores (MLflow's import alone is 0.6-0.9 s here).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

REPEATS = 15


def wall(cmd: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    bare = wall([sys.executable, "-c", "pass"])
    help_ = wall([sys.executable, "-m", "mammography", "--help"])
    sub = wall([sys.executable, "-m", "mammography", "synth", "--help"])
    torch_loaded = subprocess.run(
        [sys.executable, "-c", "import sys, runpy; sys.argv=['mammography','--help'];\n"
         "try:\n runpy.run_module('mammography', run_name='__main__')\n"
         "except SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True).stderr.strip().splitlines()[-1]
    print(f"python -c pass              : {bare * 1000:7.1f} ms (baseline)")
    print(f"mammography --help          : {help_ * 1000:7.1f} ms  ({help_ / bare:.1f}x baseline)"
          f"  goal <= 300 ms: {'OK' if help_ <= 0.3 else 'MISSED'}")
    print(f"mammography synth --help    : {sub * 1000:7.1f} ms")
    print(f"torch imported by --help   : {torch_loaded}")


if __name__ == "__main__":
    main()
