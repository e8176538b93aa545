"""A run whose command line and settings carry secrets: ``OUTDIR URL [ARGS...]``.

The body prints the URL raw (as a library might), logs a secret-named value and
fails with an exception whose message holds the URL, so every place a secret can
leave - argv, command_line, config, config.yaml, run.log, execution.error - is
exercised (tests/record/test_secrets.py).
"""

import sys

from mammography.record import Run

outdir, url = sys.argv[1], sys.argv[2]
with Run(command="reliability", experiment_type="evaluation", outdir=outdir, seed=1,
         hyperparameters={"storage": url},
         config_record={"storage": url, "db_password": "hunter2-secret", "lr": 0.1}) as run:
    print(f"connecting to {url}", flush=True)
    print(f"sqlalchemy said: could not connect with password {url.split(':')[2][:0]}"
          f"{sys.argv[3] if len(sys.argv) > 3 else ''}", flush=True)
    raise RuntimeError(f"cannot reach {url}")
sys.exit(run.exit_code)
