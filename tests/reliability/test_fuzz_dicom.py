"""Fuzzing the DICOM reader (read_header, decode, load_preprocessed) with hypothesis:
mutated real DICOM bytes and random header values; only DicomReadError may come out.

The fuzzer runs in a child process (scripts/fuzz_dicom.py): decoders are native
code, and one that aborts must fail this test, not end the test session. Budget:
MAMMOGRAPHY_RELIABILITY_LONG=1 for the long run recorded in docs/reliability.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.reliability.common import SCRIPTS, SEED, budget, rel_env


@pytest.mark.parametrize("mode", ["bytes", "tags"])
def test_only_dicom_read_errors_come_out(tmp_path, mode):
    examples = budget(300, 10_000) if mode == "bytes" else budget(150, 5_000)
    proc = subprocess.run([sys.executable, str(SCRIPTS / "fuzz_dicom.py"), mode,
                           str(examples), str(SEED), str(tmp_path)],
                          capture_output=True, text=True, env=rel_env(), timeout=3600)
    if proc.returncode != 0:
        keep = tmp_path / "reproducer.dcm"
        if (tmp_path / "current.dcm").exists():
            shutil.copy(tmp_path / "current.dcm", keep)
        pytest.fail(f"fuzzing ({mode}, seed {SEED}) ended with exit code {proc.returncode}; "
                    f"last input: {keep}\n{proc.stderr[-6000:]}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    print(stats)
    outcomes = stats["outcomes"]
    assert sum(v for k, v in outcomes.items() if k.startswith("read_header")) == examples
    # The inputs exercise both sides: some still decode, many are refused.
    assert outcomes.get("decode: ok", 0) > 0 and outcomes.get("decode: DicomReadError", 0) > 0
