"""The layering of docs/architecture.md holds: import-linter's contracts (pyproject.toml).

(`mammography --help` staying free of torch is tests/cli/test_app.py's.)
"""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, child_env


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    command = [str(lint)] if lint.exists() else [shutil.which("lint-imports") or "lint-imports"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=child_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout

