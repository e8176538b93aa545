"""`data cache` and `data check` with --ray-address on the two-node test cluster.

Synthetic full-field JPEG 2000 images (4096 x 3328, decoded at a reduced wavelet
level as always); the cache the cluster builds must be the local build byte for
byte, also when a worker is killed in the middle (its shard is redone), and the
check's audit the local one. Needs the cluster of tests/ray_cluster.py (skips
without it, fails without it in CI).
"""

import json
import subprocess
import sys

import pytest

from tests.helpers import child_env, run_cli
from tests.ray_cluster import LOOPBACK, folder_bytes, kill_a_shard_worker

pytestmark = pytest.mark.slow

SIZE = ["--img-size", "256"]


@pytest.fixture(scope="module")
def full_field(tmp_path_factory):
    """Two exams of full-field J2K images, and their cache built on this machine alone."""
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("fullfield")
    data = root / "data"
    generate_dataset(SynthConfig(out=data, exams=2, seed=3, size="4096x3328",
                                 compression="j2k"), log=lambda message: None)
    local = root / "local-cache"
    proc = run_cli("data", "cache", "--csv", data / "classificacao.csv", *SIZE,
                   "--cache-dir", local, "--workers", "2", env=env(root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return data, local


def env(root):
    return child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "memo"), OMP_NUM_THREADS="1", **LOOPBACK)


def cache_args(data, cache, address, report):
    return ["data", "cache", "--csv", data / "classificacao.csv", *SIZE, "--cache-dir", cache,
            "--ray-address", address, "--json", report]


def test_data_cache_on_the_cluster_is_the_local_build_byte_for_byte(ray_cluster, full_field,
                                                                    tmp_path):
    data, local = full_field
    cache, report = tmp_path / "cache", tmp_path / "build.json"
    proc = run_cli(*cache_args(data, cache, ray_cluster, report), env=env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert folder_bytes(cache) == folder_bytes(local)
    built = json.loads(report.read_text())
    images = built["images"]
    assert images >= 6 and built["built"] == images and built["failed"] == 0
    record = built["cluster"]
    assert record["nodes"] == 2 and record["workers"] >= 2 and record["retries"] == 0
    assert record["shards"] >= 2 and record["images"] == images
    assert sum(n["images"] for n in record["per_node"].values()) == images
    assert all(n["images_per_second"] > 0 for n in record["per_node"].values())
    assert f"Ray: {images} images in {record['shards']} shards" in proc.stdout
    # Built once: the next run reuses every entry and sends nothing to the cluster.
    again = run_cli(*cache_args(data, cache, ray_cluster, report), env=env(tmp_path))
    assert again.returncode == 0 and f"{images} reused, 0 decoded" in again.stdout
    assert "cluster" not in json.loads(report.read_text())


def test_a_killed_worker_costs_its_shard_only(ray_cluster, full_field, tmp_path):
    data, local = full_field
    cache, report = tmp_path / "cache", tmp_path / "build.json"
    proc = subprocess.Popen([sys.executable, "-m", "mammography",
                             *map(str, cache_args(data, cache, ray_cluster, report))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(tmp_path))
    try:
        kill_a_shard_worker(lambda: any(cache.rglob("*.mgc")))
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "lost its worker (WorkerCrashedError); submitted again (1 of 3)" in output
    record = json.loads(report.read_text())["cluster"]
    assert record["retries"] == 1 and record["retried"][0]["reason"] == "WorkerCrashedError"
    assert folder_bytes(cache) == folder_bytes(local)


def test_data_check_on_the_cluster_gives_the_local_audit(ray_cluster, full_field, tmp_path):
    data, _ = full_field
    audits = {}
    for where, extra in (("local", []), ("cluster", ["--ray-address", ray_cluster])):
        path = tmp_path / f"{where}.json"
        proc = run_cli("data", "check", "--csv", data / "classificacao.csv", *SIZE,
                       "--cache-dir", tmp_path / f"cache-{where}", "--json", path, *extra,
                       env=env(tmp_path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        audits[where] = json.loads(path.read_text())
    record = audits["cluster"].pop("cluster")
    assert record["nodes"] == 2 and record["images"] == audits["local"]["images"]
    assert audits["cluster"] == audits["local"]
    assert audits["local"]["segmentation"]["checked"] == audits["local"]["images"]


def test_a_cluster_that_is_not_there_is_exit_2(synthetic_dataset, tmp_path):
    data = synthetic_dataset
    proc = run_cli("data", "cache", "--csv", data / "classificacao.csv", *SIZE, "--cache-dir",
                   tmp_path / "cache", "--ray-address", "127.0.0.1:9", env=env(tmp_path))
    assert proc.returncode == 2
    assert ("Cannot connect to the Ray cluster at --ray-address 127.0.0.1:9: nothing answers "
            "at 127.0.0.1:9") in proc.stderr and "Traceback" not in proc.stderr
