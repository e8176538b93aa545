import os
import subprocess
import sys

from tests.helpers import child_env


def test_environment_is_collected_without_importing_torch():
    code = ("import sys; from mammography.record.environment import collect_environment; "
            "env = collect_environment(); "
            "assert env['python_version'] and env['hostname'] and env['packages']; "
            "assert 'torch' not in sys.modules, 'torch was imported'; print(env['torch_version'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr


def test_torch_details_once_torch_is_imported():
    code = ("import torch; from mammography.record.environment import torch_details; "
            "d = torch_details(); assert d['torch_version'] == torch.__version__; "
            "assert d['cuda_available'] in (True, False)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr


def test_openmp_threads_sleep_while_waiting_unless_the_user_chose(monkeypatch):
    from mammography.record.processes import calm_thread_waits

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    calm_thread_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    calm_thread_waits()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
