import multiprocessing as mp
from pathlib import Path

import pytest

from mammography.errors import InputError
from mammography.record.rundir import allocate_child_dir, allocate_run_dir, largest_run_number


def test_numbers_follow_the_largest_existing(tmp_path):
    assert allocate_run_dir(tmp_path).name == "results_1"
    assert allocate_run_dir(tmp_path).name == "results_2"
    (tmp_path / "results_9").mkdir()
    (tmp_path / "results_x").mkdir()
    (tmp_path / "results_12.bak").mkdir()
    assert allocate_run_dir(tmp_path).name == "results_10"
    assert largest_run_number(tmp_path) == 10


def test_root_is_created(tmp_path):
    root = tmp_path / "a" / "b"
    assert allocate_run_dir(root) == root / "results_1"


def test_root_that_is_a_file_is_a_clear_input_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        allocate_run_dir(target)


def test_unwritable_root_is_a_clear_input_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        if (root / "probe").exists() or _can_write(root):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(InputError, match="not writable"):
            allocate_run_dir(root)
    finally:
        root.chmod(0o700)


def _can_write(root: Path) -> bool:
    try:
        (root / "probe").mkdir()
    except PermissionError:
        return False
    (root / "probe").rmdir()
    return True


def test_child_dirs_are_never_reused(tmp_path):
    child = allocate_child_dir(tmp_path, "fold_1")
    assert child == tmp_path / "fold_1" / "results"
    with pytest.raises(FileExistsError):
        allocate_child_dir(tmp_path, "fold_1")


def _allocate_many(args):
    root, count = args
    return [allocate_run_dir(Path(root)).name for _ in range(count)]


def test_concurrent_processes_get_distinct_directories(tmp_path):
    processes, per_process = 24, 4
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool:
        names = sum(pool.map(_allocate_many, [(str(tmp_path), per_process)] * processes), [])
    assert len(names) == len(set(names)) == processes * per_process
    assert sorted(int(n.split("_")[1]) for n in names) == list(range(1, 97))
