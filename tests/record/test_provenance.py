import subprocess
from pathlib import Path

import pytest

from mammography.record import provenance
from mammography.record.provenance import NO_COMMIT, collect_git


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.org")
    git(path, "config", "user.name", "T")
    (path / "train.py").write_text("print('v1')\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    # Pretend the running code is not versioned, so the cwd repo is used.
    monkeypatch.setattr(provenance, "_code_file", lambda: tmp_path / "site" / "x.py")
    return path


def test_clean_repository(repo, tmp_path):
    info = collect_git(tmp_path, cwd=repo)
    assert len(info["git_commit"]) == 7 and info["git_commit_full"].startswith(info["git_commit"])
    assert info["git_branch"] == "main"
    assert info["git_dirty"] is False
    assert info["git"]["source"] == "cwd"
    assert not (tmp_path / "git_diff.patch").exists()


def test_dirty_repository_saves_the_patch_and_untracked_files(repo, tmp_path):
    (repo / "train.py").write_text("print('v2')\n")
    (repo / "new_idea.py").write_text("x = 1\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    info = collect_git(run_dir, cwd=repo)
    assert info["git_dirty"] is True
    assert info["git"]["untracked_files"] == ["new_idea.py"]
    assert info["git"]["modified_files"] == ["train.py"]
    patch = (run_dir / "git_diff.patch").read_text()
    assert "-print('v1')" in patch and "+print('v2')" in patch
    # the patch applies on the recorded commit and reproduces the code
    git(repo, "stash")
    git(repo, "apply", str(run_dir / "git_diff.patch"))
    assert (repo / "train.py").read_text() == "print('v2')\n"


def test_untracked_only_is_dirty_without_a_patch(repo, tmp_path):
    (repo / "notes.py").write_text("")
    info = collect_git(tmp_path, cwd=repo)
    assert info["git_dirty"] is True and info["git"]["diff_file"] is None


def test_detached_head(repo, tmp_path):
    git(repo, "checkout", "-q", "--detach")
    assert collect_git(tmp_path, cwd=repo)["git_branch"] == "HEAD (detached)"


def test_outside_any_repository_records_why_and_the_version(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_code_file", lambda: tmp_path / "site" / "x.py")
    outside = tmp_path / "plain"
    outside.mkdir()
    info = collect_git(tmp_path, cwd=outside)
    assert info["git_commit"] == NO_COMMIT
    assert info["git"]["available"] is False
    assert info["git"]["package_version"]
    assert "not in a git repository" in info["git"]["reason"]


def test_the_running_code_repository_wins_over_cwd(tmp_path):
    # Tests run from a checkout that tracks mammography/record/provenance.py.
    checkout = Path(provenance.__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    info = collect_git(tmp_path, cwd=tmp_path)
    assert info["git"]["source"] == "code"
    assert info["git_commit_full"] == head
