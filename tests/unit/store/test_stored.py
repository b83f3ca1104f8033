"""Stored results: computed once, reused, and computed again (the file named) when the stored file is damaged."""

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
