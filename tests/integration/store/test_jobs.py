"""The job engine: submitit parameters, longest-first order, and a killed local job resumed to identical caches."""

import json
import os
import signal
import threading
import time

import pandas as pd
import psutil
import pytest

from residual_lib.store import jobs
from residual_lib.store.cache import CacheKey, UnitCache
from residual_lib.store.jobs import ExtractJob, TrainJob


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
def test_a_killed_local_job_resumes_to_the_caches_and_results_of_an_uninterrupted_run(tmp_path, monkeypatch):
    """A stand-in slice of the paper plan: four caches, then Table 1's training of one (model, task) on them.

    The workers run single-threaded, as the reference run in this process does: a float32 matmul's bits depend
    on the thread count, and two workers of two threads each would crowd a 2-core machine."""
    from residual_lib.device import cpu_threads
    from residual_lib.experiments import tab01

    p = tab01.Params(models=["standin-clip"], datasets=["standin-mnist"], n_train=None, n_val=None, n_test=None,
                     n_random=1, max_epochs=1, patience=1, range_steps=20, fractions=[0.05], batch_size=8, device="cpu")
    keys = [CacheKey("standin-clip", "standin-imagenet", "train", 64, 0), *tab01.caches(p)]
    extraction = [ExtractJob(k, device="cpu", batch_size=8, shard_size=8) for k in keys]
    training = [TrainJob.of("tab01", p, "standin-clip", "standin-mnist")]

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torch's thread count in the job processes
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "uninterrupted"))
    with cpu_threads(1):
        for job in extraction + training:
            job()
    expected = _content_hashes(keys), tab01.train_task(p, "standin-clip", "standin-mnist")[0]

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "engine"))
    failed: list[str] = []
    runner = threading.Thread(target=lambda: failed.extend(jobs.run_plan_local(extraction, training, workers=2,
                                                                               poll_s=0.05)))
    runner.start()
    victim = extraction[0]  # the longest job: 8 shards of 8 images
    deadline = time.time() + 300
    while time.time() < deadline:
        folders = victim.key.folders()
        if folders and any((folders[0] / "shards").glob("0000*/hashes.json")):
            break
        time.sleep(0.05)
    pid = json.loads((jobs.jobs_folder() / "submitted.json").read_text())[victim.name]["job_id"]
    controller = psutil.Process(int(pid))  # submitit's controller; the extraction runs in its child
    for process in [*controller.children(recursive=True), controller]:
        os.kill(process.pid, signal.SIGKILL)
    runner.join(timeout=600)
    assert failed == [victim.name], "the killed job fails, and training waits for every cache"
    state, log = jobs.status(victim)
    assert state == "failed" and log.endswith(".err")
    assert [jobs.status(j)[0] for j in extraction[1:]] == ["done"] * len(keys[1:])
    assert jobs.status(training[0])[0] == "todo"

    assert jobs.run_plan_local(extraction, training, workers=2, poll_s=0.05) == []
    assert [jobs.status(j)[0] for j in extraction + training] == ["done"] * (len(keys) + 1)
    assert _content_hashes(keys) == expected[0]
    again = tab01.train_task(p, "standin-clip", "standin-mnist")[0]
    assert pd.Series(again).equals(pd.Series(expected[1])), "read back, not retrained"
    assert UnitCache(victim.key.folders()[0]).n == 64


@pytest.mark.slow
def test_the_slurm_path_submits_an_array_and_chains_training_on_extraction(tmp_path, monkeypatch):
    """`submit_slurm` through submitit's debug executor standing in for Slurm: both waves run, the second
    asks to start after the first array succeeded, and the submissions are recorded for `--status`. The debug
    executor runs each array task in this process when its result is asked for: the submission is under test
    here, a job in its own killed and resumed process is the local engine's test above."""
    import submitit

    from residual_lib.experiments import tab01

    requested: list[dict] = []
    submitted: list = []

    class LocalSlurm(submitit.DebugExecutor):
        """Slurm's parameters recorded (a local machine has no scheduler to pass them to)."""

        def update_parameters(self, **kwargs):
            requested.append(kwargs)
            super().update_parameters(**kwargs)

        def map_array(self, fn, *iterables):
            submitted.extend(super().map_array(fn, *iterables))
            return submitted[-len(iterables[0]):]

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(jobs, "executor", lambda kind, args=None: LocalSlurm(folder=jobs.jobs_folder() / "%j"))
    p = tab01.Params(models=["standin-clip"], datasets=["standin-mnist"], n_train=16, n_val=None, n_test=16,
                     n_random=1, max_epochs=1, patience=1, fractions=[0.05], batch_size=8, device="cpu")
    extraction = [ExtractJob(k, device="cpu", batch_size=8) for k in tab01.caches(p)]
    training = [TrainJob.of("tab01", p, "standin-clip", "standin-mnist")]

    first = jobs.submit_slurm(extraction, {"slurm_partition": "gpu"})
    [job.result() for job in submitted]
    second = jobs.submit_slurm(training, {"slurm_partition": "gpu"}, after=first)
    [job.result() for job in submitted]

    assert len(first) == len(extraction) and len(second) == 1
    assert requested == [{"slurm_additional_parameters": {"dependency": "afterok:" + ":".join(
        sorted({j.split("_")[0] for j in first}))}}]
    record = json.loads((jobs.jobs_folder() / "submitted.json").read_text())
    assert {record[j.name]["executor"] for j in extraction + training} == {"slurm"}
    assert all(j.done() for j in extraction + training)
    assert jobs.submit_slurm(extraction + training) == [], "a finished job is never submitted again"


@pytest.mark.slow
def test_jobs_beside_a_block_make_the_caches_of_an_in_process_run_and_a_failure_raises_after_it(tmp_path,
                                                                                            monkeypatch):
    """`beside` runs extraction jobs in a local process while the caller works; on one thread their caches are
    bit for bit those of the same extraction in this process, and a failed job is an error once the block ends."""
    from residual_lib.store.cache import extract
    from residual_lib.device import cpu_threads

    keys = [CacheKey("standin-clip", "standin-imagenet", "train", 24, s) for s in (0, 1)]
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "beside"))
    ran = []
    with jobs.beside([ExtractJob(k, device="cpu", batch_size=8) for k in keys], threads=1):
        ran.append("block")
    assert ran == ["block"] and all(k.status() == "done" for k in keys)
    beside = _content_hashes(keys)

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path / "here"))
    with cpu_threads(1):
        for k in keys:
            extract(k.model, k.dataset, device="cpu", batch_size=8, **k.extract_kwargs())
    assert _content_hashes(keys) == beside

    bad = CacheKey("standin-clip", "standin-imagenet", "nosuchsplit", 4, 0)
    with pytest.raises(Exception, match="nosuchsplit"):
        with jobs.beside([ExtractJob(bad, device="cpu")]):
            ran.append("second block")
    assert ran == ["block", "second block"]
