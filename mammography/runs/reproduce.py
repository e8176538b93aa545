"""`mammography runs reproduce RUN [--dry-run]`: re-run a run, saying what differs first.

Checks, each a ``WARNING:`` line when it finds a difference:

* code -- the current checkout (``collect_git``, the same function that
  recorded the run) against ``git_commit_full`` and ``git_dirty``; when both
  are dirty on the same commit, the uncommitted diffs are compared too. When
  the run was dirty, it says how to get its exact code back from
  ``git_diff.patch``.
* data -- when the manifest's CSV is reachable, the CSV and every image it
  lists are hashed again (every byte: proving the data unchanged is this
  check's job; ``--trust-memo`` takes remembered checksums of files whose
  path, size, mtime, ctime, inode and device are unchanged instead), the
  manifest digest is recomputed (``mammography.data.manifest``; no torch),
  and each file whose content differs is named. Exclusions are taken as
  recorded: deciding them again needs the full data pipeline, and the re-run
  itself records a fresh manifest anyway.
* environment -- Python and the key package versions (torch, timm, numpy, ...),
  and how many other installed packages differ.

Then the recorded ``execution.command_line`` runs from ``execution.cwd`` with
``MAMMOGRAPHY_BASED_ON=<run_dir>::reproduce`` in its environment, which the run
layer records as a ``based_on`` link with relation ``reproduce``. A leading
``mammography`` is run as ``python -m mammography`` with this interpreter, so
the re-run uses the installation that checked it. Output streams through; the
exit code is the re-run's.
"""

from __future__ import annotations

import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mammography.config.runs import RunsReproduceConfig
from mammography.errors import EXIT_FAILED, EXIT_INTERRUPTED, InputError
from mammography.record.contract import ENV_BASED_ON, GIT_PATCH_FILE, MANIFEST_FILE
from mammography.runs.discover import RunRecord, open_run
from mammography.runs.lineage import top_level_dir

BASED_ON_ENV = ENV_BASED_ON
#: Files named one per line under "data differs" (the count says how many more).
MAX_FILES_NAMED = 20
KEY_VERSIONS = {"python_version": None, "torch_version": "torch",
                "torchvision_version": "torchvision", "timm_version": "timm",
                "pydicom_version": "pydicom", "numpy_version": "numpy",
                "scikit_learn_version": "scikit-learn", "mammography_version": "mammography"}


def _state(commit: str | None, dirty: Any) -> str:
    return f"{commit or 'unknown'} ({'dirty' if dirty else 'clean'})"


def check_code(record: RunRecord) -> tuple[list[str], list[str]]:
    """(warnings, notes) comparing the recorded code with the current checkout."""
    from mammography.record.provenance import collect_git

    summary = record.summary or {}
    recorded_git = summary.get("git") or {}
    cwd = (summary.get("execution") or {}).get("cwd")
    with tempfile.TemporaryDirectory(prefix="mammography-reproduce-") as scratch:
        current = collect_git(Path(scratch), cwd=Path(cwd) if cwd and Path(cwd).is_dir()
                              else None)
        patch = Path(scratch) / GIT_PATCH_FILE
        current_patch = patch.read_bytes() if patch.exists() else b""
    warnings: list[str] = []
    notes: list[str] = []
    was = _state(summary.get("git_commit"), summary.get("git_dirty"))
    now = _state(current.get("git_commit"), current.get("git_dirty"))
    if not recorded_git.get("available", True):
        warnings.append(f"code provenance unknown: the run recorded no git commit "
                        f"({recorded_git.get('reason', 'no reason recorded')}; package "
                        f"{recorded_git.get('package_version')}); checkout {now}")
    elif not (current.get("git") or {}).get("available"):
        warnings.append(f"code cannot be compared: recorded {was}, but the current code "
                        f"is not in a git repository ({(current.get('git') or {}).get('reason')})")
    elif current.get("git_commit_full") != summary.get("git_commit_full") or \
            bool(current.get("git_dirty")) != bool(summary.get("git_dirty")):
        warnings.append(f"code differs: recorded {was}, checkout {now}")
    elif summary.get("git_dirty"):
        recorded_patch = record.dir / GIT_PATCH_FILE
        old = recorded_patch.read_bytes() if recorded_patch.exists() else b""
        if old.strip() != current_patch.strip():
            warnings.append(f"code differs: recorded {was}, checkout {now}, and the "
                            "uncommitted changes are not the same")
        else:
            notes.append(f"code matches: {now}, same uncommitted changes (untracked files "
                         "not compared)")
    else:
        notes.append(f"code matches: {now}")
    if summary.get("git_dirty") and recorded_git.get("available", True):
        patch_path = record.dir / GIT_PATCH_FILE
        if patch_path.exists():
            notes.append(f"the run had uncommitted changes; its exact code: git checkout "
                         f"{summary.get('git_commit_full')} && git apply {patch_path}")
        else:
            untracked = recorded_git.get("untracked_files") or []
            notes.append("the run had no uncommitted diff (no git_diff.patch); it was dirty "
                         f"through untracked files: {', '.join(untracked[:5]) or 'unknown'}")
    return warnings, notes


def check_data(record: RunRecord, trust_memo: bool = False) -> tuple[list[str], list[str]]:
    """(warnings, notes) from re-checksumming the data the manifest lists."""
    import json

    path = record.dir / MANIFEST_FILE
    if not path.is_file():
        return [], ["data not checked: the run has no data_manifest.json"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        csv_info = manifest.get("csv") or {}
        images = manifest["images"]
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        return [f"data not checked: data_manifest.json is unreadable ({exc})"], []
    csv_path = csv_info.get("path")
    if csv_path and not Path(csv_path).is_file():
        return [], [f"data not checked: {csv_path} is not reachable from here"]
    from mammography.data.manifest import (
        ChecksumMemo,
        checksum_files,
        default_memo_path,
        image_changes,
        manifest_digest,
        sha256_file,
    )

    root = manifest.get("dicom_root")
    paths = [Path(img["path"]) if os.path.isabs(img["path"]) or not root
             else Path(root) / img["path"] for img in images]
    errors: dict[Path, str] = {}
    with ChecksumMemo(default_memo_path()) as memo:
        facts = checksum_files(paths, memo, errors=errors, trust_memo=trust_memo)
    changes = image_changes(images, {img["path"]: facts[p].sha256 if p in facts else None
                                     for img, p in zip(images, paths, strict=True)})
    changed = sum(1 for img, p in zip(images, paths, strict=True)
                  if p in facts and facts[p].sha256 != img["sha256"])
    how = ("checksums of unchanged files from the memo (--trust-memo)" if trust_memo
           else "every byte hashed")
    fresh = dict(manifest)
    if csv_path:
        fresh["csv"] = dict(csv_info, sha256=sha256_file(Path(csv_path)))
    if manifest.get("csv_files"):  # a public dataset's several files: each checked again
        fresh["csv_files"] = [dict(f, sha256=sha256_file(Path(f["path"])))
                              if Path(f["path"]).is_file() else f
                              for f in manifest["csv_files"]]
    fresh["images"] = [dict(img, sha256=facts[p].sha256) for img, p in
                       zip(images, paths, strict=True) if p in facts]
    digest = manifest_digest(fresh)
    recorded = manifest.get("digest")
    csv_changed = (bool(csv_path) and fresh["csv"]["sha256"] != csv_info.get("sha256")) or \
        fresh.get("csv_files") != manifest.get("csv_files")
    if digest == recorded and not errors:
        return [], [f"data matches: digest {str(recorded)[:12]} (CSV and {len(images)} "
                    f"images checksummed, {how})"]
    what = [part for part, flag in (("the CSV changed", csv_changed),
                                    (f"{changed} images changed", changed),
                                    (f"{len(errors)} images missing or unreadable", errors))
            if flag]
    shown = changes[:MAX_FILES_NAMED]
    more = len(changes) - len(shown)
    return [f"data differs: recorded digest {str(recorded)[:12]}, now {digest[:12]}"
            + (f" ({', '.join(what)})" if what else "")
            + "".join(f"\n    {line}" for line in shown)
            + (f"\n    ... and {more} more" if more else "")], []


def check_environment(record: RunRecord) -> list[str]:
    from mammography.record.environment import installed_packages
    from mammography.runs.discover import MISSING, lookup

    environment = (record.summary or {}).get("environment") or {}
    installed = installed_packages()
    warnings = []
    for key, package in KEY_VERSIONS.items():
        recorded = lookup(environment, key)
        if recorded is MISSING or recorded is None:
            continue
        current = platform.python_version() if package is None else installed.get(package)
        # torch.__version__ carries the build (+cu130); metadata may not.
        if current is None or str(recorded).split("+")[0] != str(current).split("+")[0]:
            name = "python" if package is None else package
            warnings.append(f"environment differs: {name} {recorded} recorded, "
                            f"{current or 'not installed'} now")
    recorded_packages = environment.get("packages") or {}
    skip = {p for p in KEY_VERSIONS.values() if p}
    others = sorted(name for name, version in recorded_packages.items()
                    if name not in skip and installed.get(name) != version)
    if others:
        shown = ", ".join(f"{n} {recorded_packages[n]}→{installed.get(n, 'none')}"
                          for n in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        warnings.append(f"environment differs: {len(others)} other packages ({shown}{more}; "
                        "`mammography runs diff` lists them)")
    return warnings


def command_for(record: RunRecord) -> tuple[list[str], Path]:
    execution = (record.summary or {}).get("execution") or {}
    line = execution.get("command_line")
    if not line:
        raise InputError(f"{record.path}: summary.json records no execution.command_line; "
                         "nothing to re-run.")
    argv = shlex.split(line)
    if argv and argv[0] == "mammography":
        argv = [sys.executable, "-m", "mammography", *argv[1:]]
    return argv, Path(execution.get("cwd") or ".")


def run_reproduce(config: RunsReproduceConfig) -> int:
    record = open_run(config.run)
    summary = record.summary or {}
    say = sys.stdout.write
    say(f"Reproducing {record.path} ({summary.get('command')}, "
        f"{record.status}, started {(summary.get('execution') or {}).get('start_time')})\n")
    if top_level_dir(record.dir) != record.dir:
        say("NOTE: this is a child run (a CV fold or HPO trial); its command line re-runs "
            "the whole parent run.\n")
    warnings: list[str] = []
    for found, notes in (check_code(record), check_data(record, config.trust_memo),
                         (check_environment(record), [])):
        for warning in found:
            say(f"WARNING: {warning}\n")
        for note in notes:
            say(f"  {note}\n")
        warnings += found
    argv, cwd = command_for(record)
    run_dir = os.path.abspath(record.dir)
    say(f"Command: {shlex.join(argv)}\n  in {cwd}\n  with {BASED_ON_ENV}={run_dir}::reproduce\n")
    if not cwd.is_dir():
        message = f"the recorded working directory {cwd} does not exist here"
        if config.dry_run:
            say(f"WARNING: {message}\n")
        else:
            raise InputError(f"{message}; the command's relative paths would not resolve. "
                             "Recreate it, or run the command yourself from the right place.")
    if config.dry_run:
        say(f"Dry run: nothing was run ({len(warnings)} warnings).\n")
        return EXIT_FAILED if config.strict and warnings else 0
    if config.strict and warnings:
        say(f"Not re-running: {len(warnings)} warnings and --strict.\n")
        return EXIT_FAILED
    sys.stdout.flush()
    env = dict(os.environ, **{BASED_ON_ENV: f"{run_dir}::reproduce"})
    return _run(argv, cwd, env)


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env)
    except OSError as exc:
        raise InputError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the child too (same process group): let it record the
        # interruption and exit on its own.
        try:
            code = process.wait(timeout=120)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            process.send_signal(signal.SIGTERM)
            code = process.wait()
    if code < 0:  # killed by a signal: the shell's convention
        return 128 + (-code)
    return EXIT_INTERRUPTED if code == EXIT_INTERRUPTED else code
