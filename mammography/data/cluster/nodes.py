"""What every node must have before a shard runs there, asked of each node in turn.

A node that cannot see the images, or that sees another folder under the
cache's path (a local folder of the same name instead of the shared one), would
not fail loudly: it would decode nothing, or fill a cache no one else reads.
So before the first shard, one small task runs on every node (Ray's node
affinity) and answers:

* the same mammography code as this machine (a digest of its sources): another
  version would write other bytes under the same cache keys; and code loaded after
  the last change of those sources (Ray reuses a worker with the modules it imported
  first; every shard task checks this too, ``loaded_code_problem``);
* a sample of the images at the same absolute paths, with the same sizes;
* the shared folder at the same path: this machine writes a check file with a
  random token there, each node must read that token back (and, for a cache
  build, be able to write beside it); the file is removed afterwards;
* the versions of the decoding libraries (a difference is a WARNING: it may or
  may not change a pixel).

Every node's problems are reported at once, naming the node; the command stops
with exit 2 before any work is done.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from mammography.errors import DataError
from mammography.record.reporter import Reporter

#: Distributions whose versions can change what a node computes from an image.
LIBRARIES = ("numpy", "scipy", "pydicom", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
             "pylibjpeg-libjpeg", "pyjpegls", "python-gdcm", "scikit-image", "pillow", "torch",
             "timm")
PROBE_FILE_PREFIX = ".mammography-cluster-check-"
#: Seconds every node has to answer (its worker may have to start first).
PROBE_TIMEOUT_SECONDS = 180.0
SAMPLE_IMAGES = 3


class ClusterError(DataError):
    """The cluster cannot do the work as this machine would (exit 2, nothing done)."""


@dataclass
class NodeRequirements:
    """What the driver asks of every node (sent to each node's check task)."""

    code_digest: str
    #: (absolute path, size) of a few images every node must see as this machine does.
    images: list[tuple[str, int]] = field(default_factory=list)
    #: A folder every node must share with this machine (absolute), and whether the
    #: nodes write there.
    shared_folder: str | None = None
    writable: bool = False
    shared_option: str = "--cache-dir"
    probe_name: str = ""
    token: str = ""
    libraries: dict[str, str | None] = field(default_factory=dict)


def requirements(images: Sequence[tuple[str, int]], shared_folder: Path | None = None,
                 writable: bool = False, shared_option: str = "--cache-dir"
                 ) -> NodeRequirements:
    """This machine's side: its code digest and library versions, a sample of the images
    (first, middle, last), and the shared folder to prove."""
    picks = sorted({0, len(images) // 2, len(images) - 1}) if images else []
    return NodeRequirements(
        code_digest=code_digest(), images=[images[i] for i in picks][:SAMPLE_IMAGES],
        shared_folder=os.path.abspath(shared_folder) if shared_folder is not None else None,
        writable=writable, shared_option=shared_option,
        probe_name=f"{PROBE_FILE_PREFIX}{secrets.token_hex(8)}", token=secrets.token_hex(16),
        libraries=library_versions())


def code_digest() -> str:
    """sha256 over the package's Python sources (relative path and bytes, sorted)."""
    import mammography

    root = Path(mammography.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def loaded_code_problem() -> str | None:
    """Whether this process runs other code than the package's files hold now: a source
    file changed after the process imported the package (``IMPORTED_AT_NS``). A reused
    Ray worker keeps the modules it imported first, so after an edit (or an upgrade) the
    files' digest matches the driver's while the worker still runs the old code."""
    import mammography

    root = Path(mammography.__file__).resolve().parent
    imported = mammography.IMPORTED_AT_NS
    for path in sorted(root.rglob("*.py")):
        try:
            changed = path.stat().st_mtime_ns
        except OSError:
            continue
        if changed > imported:
            return (f"its Ray worker (pid {os.getpid()}) imported mammography before "
                    f"{path.relative_to(root).as_posix()} changed, and Ray reuses workers "
                    "with the code they loaded first: restart Ray on every node (ray stop, "
                    "then ray start as before) so that the workers load the current code")
    return None


def library_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def probe_node(req: NodeRequirements) -> dict[str, Any]:
    """Runs on a node: who it is and what it lacks (``problems``, empty when fine)."""
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(), "problems": node_problems(req),
            "libraries": library_versions()}


def node_problems(req: NodeRequirements) -> list[str]:
    """What this machine lacks to do the work as the driver would, in words."""
    problems: list[str] = []
    digest = code_digest()
    if digest != req.code_digest:
        problems.append(f"runs other mammography code (sources digest {digest}, this "
                        f"machine {req.code_digest}): install the same version on every node")
    stale = loaded_code_problem()
    if stale is not None:
        problems.append(stale)
    for path, size in req.images:
        try:
            seen = os.stat(path).st_size
        except OSError as exc:
            problems.append(f"cannot see the image {path} ({exc.strerror}): the images must "
                            "be on storage every node mounts at the same path")
            break
        if seen != size:
            problems.append(f"sees {path} with {seen} bytes, this machine with {size}")
            break
    if req.shared_folder is not None:
        problems += _shared_folder_problems(req)
    return problems


def _shared_folder_problems(req: NodeRequirements) -> list[str]:
    folder = req.shared_folder
    assert folder is not None
    fix = (f"put {req.shared_option} on storage every node mounts at the same path (NFS, "
           "a cluster file system)")
    try:
        with open(os.path.join(folder, req.probe_name), encoding="utf-8") as handle:
            seen = handle.read()
    except FileNotFoundError:
        return [f"cannot see {req.shared_option} {folder} as this machine does (the check "
                f"file written there is missing: a local folder of the same name, or not "
                f"mounted): {fix}"]
    except OSError as exc:
        return [f"cannot read {req.shared_option} {folder}: {exc.strerror}: {fix}"]
    if seen != req.token:
        return [f"sees another {folder} than this machine (the check file differs): {fix}"]
    if req.writable:
        try:
            fd, name = tempfile.mkstemp(prefix=".tmp-check-", dir=folder)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            return [f"cannot write in {req.shared_option} {folder}: {exc.strerror}"]
    return []


def check_nodes(ray: Any, req: NodeRequirements, out: Reporter) -> list[dict[str, Any]]:
    """Ask every alive node with CPUs (``probe_node``); ``ClusterError`` naming each node's
    problems, a WARNING for library versions that differ from this machine's."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
    if not nodes:
        raise ClusterError("The Ray cluster has no node with a CPU to run on: start its "
                           "nodes with ray start --address ... --num-cpus N")
    probe = ray.remote(num_cpus=0, max_retries=0)(probe_node)
    with _probe_file(req):
        refs = [(node, probe.options(
            name="mammography_node_check",
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(req)) for node in nodes]
        answers, problems = [], []
        for node, ref in refs:
            where = f"Ray node {node.get('NodeManagerHostname')} ({node.get('NodeManagerAddress')})"
            try:
                answer = ray.get(ref, timeout=PROBE_TIMEOUT_SECONDS)
            except ray.exceptions.GetTimeoutError:
                problems.append(f"{where} did not answer within {PROBE_TIMEOUT_SECONDS:.0f} s")
                continue
            except ray.exceptions.RayError as exc:
                problems.append(f"{where} cannot run mammography: "
                                f"{_first_line(exc)} (install it on every node)")
                continue
            answers.append(answer)
            problems += [f"{where} {text}" for text in answer["problems"]]
    if problems:
        raise ClusterError(f"The Ray cluster cannot do this work as this machine would "
                           f"({len(nodes)} nodes asked); nothing was done:", problems)
    for answer in answers:
        differ = {k: (v, req.libraries.get(k)) for k, v in answer["libraries"].items()
                  if v != req.libraries.get(k)}
        if differ:
            out.warn(f"Ray node {answer['host']} ({answer['ip']}) has other library versions "
                     "than this machine (" + ", ".join(
                         f"{k} {there} there, {here} here" for k, (there, here)
                         in sorted(differ.items())) + "): its results may differ in the last "
                     "bits; install the same versions on every node")
    return answers


@contextlib.contextmanager
def _probe_file(req: NodeRequirements) -> Any:
    if req.shared_folder is None:
        yield
        return
    path = Path(req.shared_folder) / req.probe_name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(req.token, encoding="utf-8")
    except OSError as exc:
        raise ClusterError(f"Cannot write in {req.shared_option} {req.shared_folder} on this "
                           f"machine: {exc.strerror}. Choose a folder on shared storage "
                           "that this machine can write.") from exc
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause if cause is not None else exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
