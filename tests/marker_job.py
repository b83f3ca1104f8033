"""A stand-in for `residual_lib.store.jobs.TrainJob` in the book runner's tests: picklable (worker processes import
it from here), it writes the time it ran to a file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MarkerJob:
    path: str
    module: str = "page"
    model: str = "net"
    dataset: str = "task"
    params: tuple = (("threads", 1),)

    @property
    def name(self) -> str:
        return f"train:{self.module}/{self.model}/{self.dataset}"

    def __call__(self) -> dict:
        Path(self.path).write_text(str(time.time()))
        return {"seconds": 0.0}
