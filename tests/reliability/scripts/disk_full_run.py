"""A run whose disk fills up just before it records its end: ``OUTDIR [--fail]``.

The body lowers RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG) to a
few bytes above the current summary.json, so the final summary write - and only
it - fails. The tee is a separate process and keeps writing run.log. With
``--fail`` the body then dies of the full disk itself (writing a checkpoint-like
file), as a training run does when its disk fills up.
"""

import resource
import signal
import sys

from mammography.record import Run

with Run(command="reliability", experiment_type="evaluation", outdir=sys.argv[1],
         seed=1, hyperparameters={"case": "disk_full"}) as run:
    run.log("body started")
    limit = run.summary.path.stat().st_size + 16
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    run.log("the disk is full from now on")
    if "--fail" in sys.argv:
        (run.dir / "checkpoint.bin").write_bytes(b"\0" * (limit + 1))
sys.exit(run.exit_code)
