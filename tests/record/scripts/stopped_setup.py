"""The CLI with a SIGTERM that arrives while a run sets up its record (before its
summary.json exists), driven by tests/record/test_stopped_setup.py.

``python stopped_setup.py WHICH ARG...``: WHICH is ``top`` (the command's own run) or
``child`` (its first child run: a CV fold, a tune trial); ARG... is the command line.
"""

import os
import runpy
import signal
import sys

import mammography.record.lifecycle as lifecycle

which, argv = sys.argv[1], sys.argv[2:]
real = lifecycle.initial_document


def stopped_setup(**fields):
    if (fields["parent_dir"] is None) == (which == "top"):
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a scheduler's preemption would
    return real(**fields)


lifecycle.initial_document = stopped_setup
sys.argv = ["mammography", *argv]
runpy.run_module("mammography", run_name="__main__", alter_sys=True)
