"""A tiny command body driven by the lifecycle tests: ``MODE OUTDIR``.

Modes: ok, fail, input, explained, sleep (waits for a signal), graceful (stops at the
next safe point), child, child_fail, kill (SIGKILLs itself mid-run), spawn
(writes through a subprocess and os.write), warn, repeats (20 warnings of one kind).
"""

import os
import signal
import subprocess
import sys
import time
import warnings

from mammography.errors import DataError, ExplainedFailure
from mammography.record import Run

mode, outdir = sys.argv[1], sys.argv[2]
with Run(command="test", experiment_type="evaluation", outdir=outdir, seed=7,
         hyperparameters={"lr": 0.001}) as run:
    run.log("body started")
    if mode == "fail":
        raise ValueError("boom in the body")
    if mode == "input":
        raise DataError("CSV labels.csv row 3: label 'Q' is unknown; use 1-4 or A-D.")
    if mode == "explained":
        raise ExplainedFailure("Embedding: shard 3 (images 6-7) was lost 4 times "
                               "(WorkerCrashedError); giving up after 3 retries.")
    if mode == "sleep":
        print("READY", flush=True)
        time.sleep(60)
    if mode == "graceful":
        run.graceful_stop = True
        print("READY", flush=True)
        for step in range(600):
            time.sleep(0.05)
            if run.stop_requested:
                run.log(f"saving checkpoint at step {step}")
                run.check_stop()
    if mode in ("child", "child_fail"):
        for fold in (1, 2):
            with run.child(f"fold_{fold}", integration={"cv_fold": fold}) as child:
                child.log(f"inside fold {fold}")
                child.set_results(best_val_kappa=0.5 + fold / 10)
                if mode == "child_fail" and fold == 2:
                    raise RuntimeError("fold 2 broke")
    if mode == "kill":
        for i in range(50):
            print(f"line {i}", flush=True)
        os.write(1, b"raw line before kill\n")
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "spawn":
        os.write(1, b"from os.write\n")
        subprocess.run([sys.executable, "-c", "print('from a subprocess')"], check=True)
        subprocess.run([sys.executable, "-c",
                        "import sys; sys.stderr.write('subprocess stderr\\n')"], check=True)
        warnings.warn("a python warning", stacklevel=1)
    if mode == "warn":
        run.warn("Disk cache truncation detected for 1 samples - regenerating")
    if mode == "repeats":
        for i in range(20):
            run.warn(f"excluded /data/archive/A{i}/L_CC.dcm: empty file (0 bytes)")
        run.warn("a different warning")
    run.set_results(best_val_kappa=0.42)
sys.exit(run.exit_code)
