"""Device and CPU thread choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from residual_lib.device import cpu_threads, resolve_device


@pytest.fixture(autouse=True)
def _torch_threads():
    """The tests set torch's thread count; later tests in this process get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_auto_resolves_to_a_device_and_bad_names_are_refused():
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="valid: auto, cpu, cuda"):
        resolve_device("tpu")


def test_cpu_threads_limits_every_pool_inside_the_block_and_restores_them():
    torch.set_num_threads(2)
    before = {(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()}
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info())
        np.ones((64, 64)) @ np.ones((64, 64))  # BLAS still works on one thread
    assert torch.get_num_threads() == 2
    assert {(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()} == before


def test_cpu_threads_none_leaves_the_pools_alone_and_zero_is_refused():
    torch.set_num_threads(2)
    with cpu_threads(None):
        assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads=0"):
        with cpu_threads(0):
            pass
    assert torch.get_num_threads() == 2


def test_computes_runs_an_experiment_under_its_threads_and_restores_them():
    from dataclasses import dataclass

    from residual_lib.experiments.base import ComputeParams, computes

    @dataclass(frozen=True)
    class Params(ComputeParams):
        pass

    @computes
    def run(p):
        """An experiment's run."""
        return torch.get_num_threads()

    torch.set_num_threads(2)
    assert run(Params(threads=1)) == 1
    assert torch.get_num_threads() == 2
    assert run(Params()) == 2
    assert run.__doc__ == "An experiment's run."
