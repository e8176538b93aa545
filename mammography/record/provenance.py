"""Code provenance: which commit, branch and uncommitted changes produced a run.

The repository is the one holding the *running code* (an editable install or
a checkout on PYTHONPATH); when the code is not under version control (a
wheel in site-packages) we fall back to the working directory's repository —
where researchers keep configs and scripts — and say so. Outside any
repository we record that fact and the package version instead of failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mammography.record.contract import GIT_PATCH_FILE
from mammography.record.jsonio import write_text_atomic

# The schema asks for a 7-hex `git_commit` on every run; this value means
# "no commit is known" and always comes with `git.available = false`.
NO_COMMIT = "0000000"
MAX_UNTRACKED_LISTED = 1000


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mammography")
    except PackageNotFoundError:
        return "unknown"


def _code_file() -> Path:
    """A file that is certainly part of the running package."""
    return Path(__file__).resolve()


def _open_repo(path: Path) -> Any:
    import git  # GitPython; lazy so `--help` stays fast

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _tracks(repo: Any, file: Path) -> bool:
    """Does ``repo`` version ``file``? (A venv inside a repo is not the repo's code.)"""
    try:
        rel = file.relative_to(Path(repo.working_tree_dir).resolve())
        repo.git.ls_files("--error-unmatch", str(rel))
    except Exception:
        return False
    return True


def find_repository(cwd: Path | None = None) -> tuple[Any, str]:
    """(repo or None, source) with source ``code``, ``cwd`` or ``none``."""
    try:
        code_file = _code_file()
        repo = _open_repo(code_file.parent)
        if repo is not None and _tracks(repo, code_file):
            return repo, "code"
        repo = _open_repo(Path(cwd or Path.cwd()))
        if repo is not None:
            return repo, "cwd"
    except ImportError as exc:  # GitPython present but no git executable
        return None, f"none ({exc})"
    return None, "none"


def collect_git(run_dir: Path | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Git state as summary fields; writes ``git_diff.patch`` into ``run_dir`` when dirty.

    Returns top-level fields (``git_commit``, ``git_commit_full``,
    ``git_branch``, ``git_dirty``) plus a ``git`` detail section. Never raises:
    a provenance problem is recorded, not allowed to stop the experiment.
    """
    try:
        return _collect_git(run_dir, cwd)
    except Exception as exc:
        return {"git_commit": NO_COMMIT, "git_commit_full": None, "git_branch": None,
                "git_dirty": True,
                "git": {"available": False, "source": "error", "package_version":
                        package_version(), "reason": f"reading git state failed: {exc!r}"}}


def _collect_git(run_dir: Path | None, cwd: Path | None) -> dict[str, Any]:
    repo, source = find_repository(cwd)
    detail: dict[str, Any] = {"available": False, "source": source,
                              "package_version": package_version()}
    # Code that no commit describes cannot be shown to be unmodified, so it is
    # recorded as dirty (the schema wants a boolean; `git.reason` says why).
    unknown = {"git_commit": NO_COMMIT, "git_commit_full": None, "git_branch": None,
               "git_dirty": True, "git": detail}
    if repo is None:
        detail["reason"] = ("the running code and the working directory are not in a git "
                            "repository; the package version identifies the code")
        return unknown
    detail["repository"] = str(repo.working_tree_dir)
    try:
        commit = repo.head.commit
    except ValueError:
        detail["reason"] = "the repository has no commits yet"
        return unknown
    except Exception as exc:  # git executable missing or repo unreadable
        detail["reason"] = f"git failed: {exc}"
        return unknown
    try:
        branch = repo.active_branch.name
    except TypeError:
        branch = "HEAD (detached)"
    untracked = list(repo.untracked_files)
    changed = repo.is_dirty(index=True, working_tree=True, untracked_files=False)
    dirty = changed or bool(untracked)
    detail.update(
        available=True,
        commit_time=commit.committed_datetime.isoformat(),
        commit_message=commit.summary,
        untracked_files=untracked[:MAX_UNTRACKED_LISTED],
        untracked_count=len(untracked),
        modified_files=[d.a_path for d in repo.index.diff(None)][:MAX_UNTRACKED_LISTED],
        staged_files=[d.a_path for d in repo.index.diff("HEAD")][:MAX_UNTRACKED_LISTED],
        diff_file=None,
    )
    if changed and run_dir is not None:
        # The patch reconstructs the exact code: `git apply` it on git_commit_full.
        patch = repo.git.diff("HEAD", "--binary")
        if patch:
            # Atomic: a full disk must not leave half a patch that `runs reproduce`
            # would later apply; the commit is still recorded when the write fails.
            try:
                write_text_atomic(Path(run_dir) / GIT_PATCH_FILE, patch + "\n")
                detail["diff_file"] = GIT_PATCH_FILE
            except OSError as exc:
                detail["diff_error"] = f"could not write git_diff.patch: {exc}"
    return {
        "git_commit": commit.hexsha[:7],
        "git_commit_full": commit.hexsha,
        "git_branch": branch,
        "git_dirty": dirty,
        "git": detail,
    }
