"""Cost of the run.log tee per printed line: 100k short lines with and without it.

Both measurements run in the same child process, writing to the same kind of
destination (a pipe drained by this process), so the difference is the tee.
The tee time includes waiting for the tee process to drain everything.
Goal: <= 10 us per line (MLflow logs at ~430 us per call).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

LINES = 100_000

CHILD = r"""
import sys, time
from mammography.record.tee import Tee
n, log = int(sys.argv[1]), sys.argv[2]
sys.stdout.reconfigure(line_buffering=True)
def burst(tag):
    start = time.perf_counter()
    for i in range(n):
        print(f"{tag} step {i} loss 0.1234")
    sys.stdout.flush()
    return time.perf_counter() - start
plain = burst("plain")
start = time.perf_counter()
tee = Tee(log)
tee.start()
teed_burst = burst("teed")
tee.stop()
teed = time.perf_counter() - start
print(f"RESULT {plain} {teed} {teed_burst}", file=sys.stderr)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "run.log"
        proc = subprocess.run([sys.executable, "-c", CHILD, str(LINES), str(log)],
                              capture_output=True, text=True,
                              check=True)
        plain, teed, burst = map(float, proc.stderr.strip().split("RESULT ")[-1].split())
        logged = sum(1 for line in log.read_text().splitlines() if "teed step" in line)
    per_line = (teed - plain) / LINES * 1e6
    print(f"{LINES} lines, line-buffered print to a pipe")
    print(f"without tee : {plain / LINES * 1e6:6.2f} us/line")
    print(f"with tee    : {teed / LINES * 1e6:6.2f} us/line "
          f"(writer side {burst / LINES * 1e6:.2f} us/line; incl. start, drain, stop)")
    print(f"tee cost    : {per_line:6.2f} us/line  ({teed / plain:.2f}x)  goal <= 10 us: "
          f"{'OK' if per_line <= 10 else 'MISSED'}")
    print(f"lines in run.log: {logged}/{LINES}")


if __name__ == "__main__":
    main()
