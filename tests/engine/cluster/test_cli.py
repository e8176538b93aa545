"""`embed` and `predict` with --ray-address on the two-node test cluster = the local runs.

Synthetic JPEG 2000 images (small: the model is what is spread here; full-field
decoding on the cluster is tests/data/cluster/), the tiny timm test model at 64 px,
batches of 2 so that 16 images make 8 shards. ``features.npy`` and the three
prediction tables must be the local run's bytes - with the decode on the cluster
too (embed into an empty cache), with a two-model ensemble and test-time
augmentation (predict), and when a worker is killed in the middle (its shard is
redone and recorded). Every run, local or not, has one torch thread
(OMP_NUM_THREADS=1): the cluster's tasks run the driver's thread count, and each
node of the test cluster has one CPU. Needs the cluster of tests/ray_cluster.py
(skips without it, fails without it in CI).
"""

import subprocess
import sys

import pytest

from tests.engine.model_runs import write_cv_parent
from tests.helpers import child_env, read_summary, run_cli
from tests.ray_cluster import LOOPBACK, kill_a_shard_worker

pytestmark = pytest.mark.slow

MODEL = ["--batch-size", "2"]
EMBED = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
         "--probe-folds", "0", *MODEL]
TABLES = ("predictions_image.csv", "predictions_breast.csv", "predictions_exam.csv")


def env(root):
    return child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "memo"), OMP_NUM_THREADS="1", **LOOPBACK)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Four exams of J2K images, a two-fold model, and their embed and predict runs made on
    this machine alone (one cache, which the cluster runs below may read)."""
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cluster-model")
    data = root / "data"
    generate_dataset(SynthConfig(out=data, exams=4, seed=3, compression="j2k"),
                     log=lambda message: None)
    models = write_cv_parent(root / "cv", folds=2, img_size=64)
    runs = {}
    for name, args in (("embed", embed_args(data, root / "cache")),
                       ("predict", predict_args(data, models, root / "cache"))):
        proc = run_cli(*args, "--outdir", root / name, env=env(root))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[name] = root / name / "results_1"
    return {"data": data, "models": models, "cache": root / "cache", **runs}


def embed_args(data, cache):
    return ["embed", "--csv", data / "classificacao.csv", *EMBED, "--cache-dir", cache]


def predict_args(data, models, cache):
    return ["predict", "--run", models, "--dicom-root", data / "archive", "--tta", *MODEL,
            "--cache-dir", cache]


def test_embed_on_the_cluster_is_the_local_run_byte_for_byte(ray_cluster, local, tmp_path):
    proc = run_cli(*embed_args(local["data"], tmp_path / "cache"), "--ray-address",
                   ray_cluster, "--outdir", tmp_path / "embed", env=env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "embed" / "results_1"
    for name in ("features.npy", "metadata.csv"):
        assert (run / name).read_bytes() == (local["embed"] / name).read_bytes(), name
    summary = read_summary(run)
    record = summary["cluster"]
    assert record["task"] == "Embedding" and record["nodes"] == 2 and record["retries"] == 0
    assert record["images"] == 16 and record["shards"] == 8 and record["shard_size"] == 2
    assert record["torch_threads"] == 1 and record["workers"] >= 2
    assert sum(n["images"] for n in record["per_node"].values()) == 16
    assert record["weights"]["kind"] == "backbone" and len(record["weights"]["sha256"]) == 64
    # The empty cache was filled on the cluster too: decoded there, one record of it.
    assert summary["data_config"]["cache"]["cluster"]["images"] == 16
    assert "Ray: 16 images in 8 shards of up to 2 on 2 nodes" in proc.stdout


def test_predict_on_the_cluster_is_the_local_run_byte_for_byte(ray_cluster, local, tmp_path):
    proc = run_cli(*predict_args(local["data"], local["models"], local["cache"]),
                   "--ray-address", ray_cluster, "--outdir", tmp_path / "predict",
                   env=env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "predict" / "results_1"
    for name in TABLES:
        assert (run / name).read_bytes() == (local["predict"] / name).read_bytes(), name
    record = read_summary(run)["cluster"]
    assert record["task"] == "Scoring" and record["nodes"] == 2 and record["images"] == 16
    assert sorted(record["weights"]) == ["results_1-fold_1", "results_1-fold_2"]
    assert len({w["sha256"] for w in record["weights"].values()}) == 2


def test_a_killed_worker_costs_its_shard_only(ray_cluster, local, tmp_path):
    # A shard of two 64 px images takes milliseconds: on a busy machine the SIGKILL may
    # land once the worker has handed its shard back (a run with no retry, and every image
    # embedded once). That attempt proves nothing, so it is made again; a kill that lands
    # inside a shard must cost that shard only.
    for attempt in range(1, 4):
        outdir = tmp_path / f"embed_{attempt}"
        args = [*embed_args(local["data"], local["cache"]), "--ray-address", ray_cluster,
                "--outdir", outdir]
        proc = subprocess.Popen([sys.executable, "-m", "mammography", *map(str, args)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env(tmp_path))
        try:
            kill_a_shard_worker(lambda: True)  # the entries are there: every shard is the model's
            output, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, output
        record = read_summary(outdir / "results_1")["cluster"]
        if record["retries"] == 0 and "lost its worker" not in output:
            continue  # the kill missed every shard
        break
    else:
        pytest.fail("three SIGKILLs in a row landed between shards")
    assert "lost its worker (WorkerCrashedError); submitted again (1 of 3)" in output
    run = outdir / "results_1"
    assert (run / "features.npy").read_bytes() == (local["embed"] / "features.npy").read_bytes()
    assert record["retries"] == 1 and record["retried"][0]["reason"] == "WorkerCrashedError"
    assert sum(n["images"] for n in record["per_node"].values()) == 16


def test_what_the_cluster_cannot_do_is_exit_2(local, tmp_path):
    cases = [(["--ray-address", "127.0.0.1:9"],
              "Cannot connect to the Ray cluster at --ray-address 127.0.0.1:9"),
             (["--ray-address", "auto", "--cache", "memory"],
              "--ray-address with --cache memory: the cluster's tasks read the decoded images "
              "from the shared disk cache")]
    for extra, expected in cases:
        proc = run_cli(*predict_args(local["data"], local["models"], local["cache"]), *extra,
                       "--outdir", tmp_path / "refused", env=env(tmp_path))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert expected in proc.stderr and "Traceback" not in proc.stderr

