"""Stored results: computed once, reused, and computed again (the file named) when the stored file is damaged."""

import threading
import time

from residual_lib.store.stored import stored, stored_path


def test_a_truncated_stored_result_is_named_and_computed_again(tmp_artifacts, capsys):
    calls = []

    def compute():
        calls.append(1)
        return {"accuracy": 0.5}

    key = {"model": "m", "task": "t"}
    assert stored("probe", key, compute) == {"accuracy": 0.5} and len(calls) == 1
    assert stored("probe", key, compute) == {"accuracy": 0.5} and len(calls) == 1  # reused
    path = stored_path("probe", key)
    path.write_bytes(path.read_bytes()[:40])
    assert stored("probe", key, compute) == {"accuracy": 0.5} and len(calls) == 2
    assert f"stored result: {path} is truncated or damaged" in capsys.readouterr().err


def test_callers_of_one_key_at_once_compute_it_once(tmp_artifacts):
    """A page and the book runner's early job asking for the same key: the second waits, then reads the first's."""
    calls, start = [], threading.Barrier(2)

    def compute():
        calls.append(1)
        time.sleep(0.5)  # the other caller arrives meanwhile
        return {"accuracy": 0.5}

    def caller(results: list):
        start.wait()
        results.append(stored("probe", {"model": "m", "task": "t"}, compute))

    results: list = []
    threads = [threading.Thread(target=caller, args=(results,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [{"accuracy": 0.5}] * 2 and len(calls) == 1
