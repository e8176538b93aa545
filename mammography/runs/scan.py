"""Every run under the roots, holding only the summary paths a command reads, fast.

The walk of discover.py (the same folders are runs, linked to the same
parents, parents before children), with two differences that make `runs
list`, `runs clean` and `runs validate` scale to 100,000 runs:

* each run keeps a *pruned* summary (projection.py): the paths the command
  asked for, nothing else -- so memory stays flat, not ~60 KB a run;
* through the run index (index.py) a folder that has not changed since the
  last call is not listed again, and a summary.json that has not changed is
  not read again: what the command needs comes from the index's parts. Every
  folder and every summary is still stat'ed, so the answer is what the files
  say now. ``use_index=False`` (or an index that cannot be used) reads every
  summary, keeping the same little of each.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammography.record.contract import (
    CHILD_RUN_DIR,
    RUN_DIR_RE,
    SUMMARY_FILE,
    SummaryUnreadable,
    read_summary,
)
from mammography.runs import projection
from mammography.runs.discover import (
    MAX_DEPTH,
    Classifier,
    RunRecord,
    check_roots,
    list_folder,
)
from mammography.runs.index import (
    FIELDS,
    NOT_TRUSTED,
    VIEW,
    DamagedPart,
    RunIndex,
    file_key,
    stored_key,
    trusted_mtime,
)

_GONE: Any = object()  # what visiting a folder that vanished returns
PREFETCH = 500  # sibling folders whose index rows are read in one query


@dataclass(frozen=True)
class IndexRef:
    """Where a run's summary is remembered: its root's index, folder and summary stat."""

    index: RunIndex
    rel: str
    stat: tuple[int, int, int, int]


def scan_runs(roots: Iterable[Path], paths: Iterable[str], *, use_index: bool = True,
              stale_after: float | None = None, when: dt.datetime | None = None,
              keep_index: bool = False,
              on_record: Callable[[RunRecord], None] | None = None) -> list[RunRecord]:
    """Every run directory under ``roots`` (parents before their children), each with the
    pruned summary of ``paths``; statuses classified as find_runs does.

    ``keep_index``: leave the roots' indexes open (``record.index_ref``) for a caller
    that writes to them (`runs validate`); it closes them with ``close_indexes``.
    ``on_record``: called with each record as soon as it is found and classified (its
    children come later), e.g. to keep what a command shows and drop the summary.
    """
    records: list[RunRecord] = []
    wanted = tuple(dict.fromkeys(paths))
    classifier = Classifier(stale_after=stale_after, when=when)

    def found(record: RunRecord) -> None:
        if record.view is None:  # else restored from the index, status and all
            classifier(record)
            if on_record is not None:
                on_record(record)

    with collector_paused():
        for root in check_roots(roots):
            index = RunIndex.open(root) if use_index else None
            views = getattr(on_record, "cache_mode", None)
            fields = getattr(on_record, "keys", None)
            if index is not None and views is not None:
                index.use_views(on_record.fingerprint)
            if index is not None and fields:
                index.use_views(on_record.fields_fingerprint, FIELDS)
            try:
                _Walker(root, index, wanted, records, found,
                        on_record if views else None,
                        on_record if fields else None).visit("", str(root), None, 0)
            finally:
                if index is not None:
                    index.flush()
                    if not keep_index:
                        index.close()
    return records


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while records pile up: it would traverse
    every live record again and again (a third of `runs list` at 100,000 runs), and
    records become garbage only when the command ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def reread(records: Iterable[RunRecord], paths: Iterable[str]) -> None:
    """Each record's pruned summary of ``paths`` again, from the run index where it still
    holds (open: ``scan_runs(keep_index=True)``), else from the file (``{}`` when
    unreadable, as the walk leaves it): a listing renders the few rows it shows after
    choosing them."""
    wanted = tuple(dict.fromkeys(paths))
    walkers: dict[int, _Walker] = {}
    for record in records:
        ref = record.index_ref
        summary: Any = None
        if ref is not None:
            walker = walkers.get(id(ref.index))
            if walker is None:
                walker = walkers[id(ref.index)] = _Walker(record.root, ref.index, wanted, [],
                                                          lambda _record: None)
            row = ref.index.get(ref.rel, walker.fetch)
            if row is not None and row.stat == ref.stat and row.problem is None:
                summary = walker._summary_from_index(ref.rel, record._dir, row)
        if summary is None:
            try:
                summary = projection.prune(read_summary(record.dir), wanted)
            except SummaryUnreadable as exc:
                summary = exc
        record.summary = None if isinstance(summary, SummaryUnreadable) else summary


def close_indexes(records: Iterable[RunRecord]) -> None:
    seen = set()
    for record in records:
        ref = record.index_ref
        if ref is not None and id(ref.index) not in seen:
            seen.add(id(ref.index))
            ref.index.close()


def _list(path: str) -> tuple[bool, list[str]] | None:
    """(has summary.json, sub-folders to walk, by name) of one folder; None if unreadable."""
    listed = list_folder(path)
    if listed is not None:
        listed[1].sort()
    return listed


def _kept(row: Any, part: str) -> str | None:
    """A rendering kept in the row (VIEW, FIELDS), None when none is or it is damaged."""
    try:
        return row.parts.get(part)
    except DamagedPart:
        return None


def _join(path: str, name: str) -> str:
    """``str(Path(path) / name)``, without making a Path (100,000 times)."""
    if path == ".":
        return name
    return f"{path}{name}" if path.endswith("/") else f"{path}/{name}"


class _Walker:
    def __init__(self, root: Path, index: RunIndex | None, paths: tuple[str, ...],
                 out: list[RunRecord], found: Callable[[RunRecord], None],
                 views: Any = None, fields: Any = None) -> None:
        self.root, self.index, self.paths, self.out = root, index, paths, out
        self.found = found
        # A command whose rendering of a run depends on its summary alone (rows.Viewer
        # in plain `runs list`) keeps it in the index, and gets it back for a summary
        # that has not changed: no summary part is then parsed at all.
        self.views = views
        # A filtered listing (rows.Viewer with keys) keeps the values it asked of each
        # finished run (FIELDS) and matches such a run from them next time.
        self.fields = fields
        self.plan = projection.Plan(paths)
        self.fetch = tuple(sorted(self.plan.parts(()) or ())) + (
            (VIEW,) if views is not None else ()) + ((FIELDS,) if fields is not None else ())

    def visit(self, rel: str, path: str, parent: RunRecord | None, depth: int,
              row: Any = _GONE) -> Any:
        """Walk one folder (``row``: its index row when already fetched, None for none).
        Returns its stored mtime when it is a *leaf* (no sub-folders, no summary:
        remembered in its parent's row, only stat'ed next time), None for any other
        folder, _GONE when it cannot be read."""
        try:
            st = os.stat(path)
        except OSError:
            return _GONE
        if row is _GONE:
            row = self.index.get(rel, self.fetch) if self.index is not None else None
        listed = row is not None and row.dir_mtime == st.st_mtime_ns
        if listed:
            has_summary, subdirs, leaves = row.has_summary, row.subdirs, row.leaves
        else:
            found = _list(path)
            if found is None:
                return _GONE
            (has_summary, subdirs), leaves = found, []
        name = os.path.basename(path)
        # As in discover.py: a results_N without summary.json is a broken run at top
        # level; inside a run only folds/trials (``fold_i/results``) count.
        looks_like_run = (RUN_DIR_RE.match(name) and parent is None) or \
            (name == CHILD_RUN_DIR and parent is not None)
        record, write = None, not listed
        # Unless the summary is read again, only the folder's own columns are written.
        summary_stat, problem, omitted, parts = (
            (row.stat, row.problem, None, None) if row is not None
            else (None, None, None, None))
        if has_summary or looks_like_run:
            record, changed = self._record(rel, path, row if has_summary else None, parent)
            if changed is not None:
                summary_stat, problem, omitted, parts = changed
                write = True
        if depth < MAX_DEPTH:
            subdirs, leaves, moved = self._children(rel, path, subdirs, leaves,
                                                    record or parent, depth)
            write = write or moved
        if record is None and not has_summary and not subdirs and not leaves:
            if row is not None and self.index is not None:
                self.index.forget(rel)  # a leaf now: its parent's row remembers it
            return trusted_mtime(st)
        if write and self.index is not None:
            if row is not None and not listed:
                before = set(row.subdirs) | {leaf[0] for leaf in row.leaves}
                for gone in before - set(subdirs) - {leaf[0] for leaf in leaves}:
                    self.index.forget(f"{rel}/{gone}" if rel else gone)
            self.index.put(rel, dir_mtime=trusted_mtime(st), subdirs=subdirs, leaves=leaves,
                           has_summary=has_summary, stat=summary_stat, problem=problem,
                           omitted=omitted, parts=parts)
        return None

    def _children(self, rel: str, path: str, subdirs: list[str], leaves: list[list[Any]],
                  parent: RunRecord | None, depth: int
                  ) -> tuple[list[str], list[list[Any]], bool]:
        """Visit the sub-folders; (sub-folders, leaves, whether that differs from before)."""
        new_subdirs: list[str] = []
        new_leaves: list[list[Any]] = []
        changed = False

        def place(name: str, result: Any) -> None:
            nonlocal changed
            if result is _GONE:
                changed = True
            elif result is None:
                new_subdirs.append(name)
            else:
                new_leaves.append([name, result])

        for start in range(0, len(subdirs), PREFETCH):
            names = subdirs[start:start + PREFETCH]
            rels = [f"{rel}/{name}" if rel else name for name in names]
            # Many sub-folders (runs side by side): their rows in one query, not one each.
            rows = self.index.get_many(rels, self.fetch) \
                if self.index is not None and len(names) > 1 else None
            for name, child_rel in zip(names, rels, strict=True):
                result = self.visit(child_rel, _join(path, name), parent, depth + 1,
                                    rows.get(child_rel) if rows is not None else _GONE)
                changed = changed or result is not None
                place(name, result)
        for name, mtime in leaves:
            child = _join(path, name)
            try:
                if os.stat(child).st_mtime_ns == mtime:
                    new_leaves.append([name, mtime])
                    continue
            except OSError:
                changed = True
                continue
            result = self.visit(f"{rel}/{name}" if rel else name, child, parent, depth + 1)
            changed = changed or result != mtime
            place(name, result)
        return new_subdirs, new_leaves, changed

    def _record(self, rel: str, path: str, row: Any, parent: RunRecord | None
                ) -> tuple[RunRecord, tuple[Any, ...] | None]:
        """The run in ``path``, and (stat, problem, omitted, parts) to remember when its
        summary was read (None when the index's record of it still holds)."""
        summary, problem, changed, ref, view = None, None, None, None, None
        kept_fields, restored = None, False
        try:
            st = os.stat(f"{path}/{SUMMARY_FILE}")
        except OSError:
            st = None
            problem = f"{SUMMARY_FILE} missing"
        if st is not None:
            live = file_key(st)
            if row is not None and row.stat == live and live[1] != NOT_TRUSTED:
                problem = row.problem
                if problem is None and self.views is not None:
                    view = _kept(row, VIEW)
                if problem is None and self.fields is not None:
                    kept_fields = _kept(row, FIELDS)
                    restored = kept_fields is not None
                if problem is None and view is None and not restored:
                    summary = self._summary_from_index(rel, path, row)
                    if isinstance(summary, SummaryUnreadable):  # changed since its stat
                        problem, summary = str(summary), None
            else:
                try:
                    document = read_summary(Path(path))
                except SummaryUnreadable as exc:
                    problem = str(exc)
                    changed = (stored_key(st), problem, [], {})
                else:
                    summary = projection.prune(document, self.paths)
                    if self.index is not None:
                        parts, omitted = projection.parts_of(document)
                        changed = (stored_key(st), None, omitted, parts)
                    del document
            if self.index is not None:
                ref = IndexRef(self.index, rel, live)
        record = RunRecord(dir=path, root=self.root, summary=summary, problem=problem,
                           parent=parent, index_ref=ref)
        if view is not None and not self.views.restore(record, view):
            view = None  # damaged: read the run as usual
            self._read_again(record, rel, path, row)
        elif restored and not self.fields.restore_fields(record, kept_fields):
            # What was kept lacks a key asked now (or is damaged): read the run as usual.
            restored = False
            self._read_again(record, rel, path, row)
        if parent is not None:
            parent.children.append(record)
        self.out.append(record)
        self.found(record)
        if view is None and self.views is not None and self.index is not None and \
                st is not None and problem is None:
            made = self.views.kept(record)
            stat = changed[0] if changed is not None else row.stat
            if made is not None and stat[1] != NOT_TRUSTED:
                self.index.put_view(rel, stat, made)
        if self.fields is not None and not restored and self.index is not None and \
                st is not None and record.problem is None:
            made = self.fields.fields_of_run(record, kept_fields if changed is None else None)
            stat = changed[0] if changed is not None else row.stat
            if made is not None and stat[1] != NOT_TRUSTED:
                self.index.put_fields(rel, stat, made)
        return record, changed

    def _read_again(self, record: RunRecord, rel: str, path: str, row: Any) -> None:
        """The pruned summary of a run whose kept rendering or fields could not be used."""
        summary = self._summary_from_index(rel, path, row)
        if isinstance(summary, SummaryUnreadable):
            record.problem, record.summary = str(summary), None
        else:
            record.summary = summary

    def _summary_from_index(self, rel: str, path: str, row: Any
                            ) -> dict[str, Any] | SummaryUnreadable:
        """The pruned summary from the index's parts (the file itself for what it does not
        keep, or where a part is damaged); the error when the file cannot be read."""
        try:
            try:
                return self._from_index(rel, path, row)
            except KeyError:  # DamagedPart, or a part the row should hold but lacks
                return projection.prune(read_summary(Path(path)), self.paths)
        except SummaryUnreadable as exc:
            return exc

    def _from_index(self, rel: str, path: str, row: Any) -> dict[str, Any]:
        if self.plan.is_list:  # what `runs list` shows: the head part is just that
            return json.loads(row.parts[projection.HEAD])
        omitted = () if not self.plan.rest else row.omitted  # the head omits nothing
        needed = self.plan.parts(omitted) if omitted is not None else None
        if needed is None:  # a path into something the index does not keep
            return projection.prune(read_summary(Path(path)), self.paths)
        parts = {p: row.parts[p] for p in needed if p in row.parts}
        missing = tuple(p for p in needed if p not in row.parts and p not in self.fetch)
        if missing and self.index is not None:
            parts.update(self.index.parts(rel, missing))
        return projection.assemble(parts, self.paths)
