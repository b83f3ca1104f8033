"""The job engine: submitit parameters, longest-first order, and a killed local job resumed to identical caches."""

import json
import os
import signal
import threading
import time

import pytest

from residual_lib import jobs
from residual_lib.cache import CacheKey, UnitCache
from residual_lib.jobs import ExtractJob


def test_slurm_parameters_keep_submitits_names_and_prefix_slurms_own():
    params = jobs.slurm_parameters("partition=gpu gpus_per_node=1 timeout_min=240 slurm_account=lab")
    assert params == {"slurm_partition": "gpu", "gpus_per_node": 1, "timeout_min": 240, "slurm_account": "lab"}
    with pytest.raises(ValueError, match="'partition' is not key=value"):
        jobs.slurm_parameters("partition")


def test_longest_jobs_first():
    small = ExtractJob(CacheKey("m", "standin-imagenet", "train", 16))
    whole = ExtractJob(CacheKey("m", "standin-imagenet", "train", None))  # the split: 256 images
    middle = ExtractJob(CacheKey("m", "standin-mnist", "train", 100))
    assert jobs.longest_first([small, whole, middle]) == [whole, middle, small]


def test_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="unknown executor 'pbs'; valid: local, slurm"):
        jobs.executor("pbs")


def _content_hashes(keys) -> dict:
    return {k: json.loads((k.folders()[0] / "manifest.json").read_text())["content_sha256"] for k in keys}


@pytest.mark.slow
def test_a_killed_local_job_resumes_to_the_caches_of_a_single_process_run(tmp_path, monkeypatch):
    keys = [CacheKey("standin-clip", "standin-imagenet", "train", 64, 0),
            CacheKey("standin-clip", "standin-mnist", "train", 16, 0)]
    work = [ExtractJob(k, device="cpu", batch_size=8, shard_size=8) for k in keys]

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "single"))
    for job in work:
        job()
    expected = _content_hashes(keys)

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "engine"))
    failed: list[str] = []
    runner = threading.Thread(target=lambda: failed.extend(jobs.run_local(work, workers=2, poll_s=0.05)))
    runner.start()
    victim = work[0]  # the longest job: 8 shards of 8 images
    deadline = time.time() + 300
    while time.time() < deadline:
        folders = victim.key.folders()
        if folders and any((folders[0] / "shards").glob("0000*/hashes.json")):
            break
        time.sleep(0.05)
    pid = json.loads((jobs.jobs_folder() / "submitted.json").read_text())[victim.name]["job_id"]
    os.kill(int(pid), signal.SIGKILL)
    runner.join(timeout=600)
    assert failed == [victim.name]
    state, log = jobs.status(victim)
    assert state == "failed" and log.endswith(".err")
    assert jobs.status(work[1])[0] == "done"

    assert jobs.run_local(work, workers=2, poll_s=0.05) == []
    assert [jobs.status(j)[0] for j in work] == ["done", "done"]
    assert _content_hashes(keys) == expected
    for key in keys:
        assert UnitCache(key.folders()[0]).n == key.n
