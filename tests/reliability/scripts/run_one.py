"""One complete, cheap run: ``OUTDIR TAG LINES`` - the full lifecycle (allocation,
tee, summary, provenance) writing LINES numbered lines, for the concurrency test."""

import sys

from mammography.record import Run

outdir, tag, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Run(command="reliability", experiment_type="evaluation", outdir=outdir, seed=int(tag),
         hyperparameters={"tag": int(tag)}) as run:
    for i in range(lines):
        run.log(f"process {tag} line {i}")
    run.set_results(tag=int(tag), lines=lines)
sys.exit(run.exit_code)
