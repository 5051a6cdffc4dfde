"""What every Ray-backed pass shares: where the cluster is and how many workers it gets, starting it, and the
tests' fault injection. Ray is an optional extra (`pip install -e '.[ray]'`); without it, asking for it is one
line naming the extra."""

import os
from dataclasses import dataclass

from tools.errors import InterpError


@dataclass(frozen=True)
class RaySettings:
    address: str = "auto"
    """'auto' (or 'local'): a Ray cluster on this machine, started for the run unless one is running; else a
    cluster's address (ray://host:10001, or host:6379 from a node of it)."""
    workers: int = 2
    threads: int = 1
    """torch threads per worker: on N cores, N workers of 1 thread each."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads < 1:
            raise InterpError(f"--workers {self.workers} and threads per worker {self.threads} must be at least 1")


def require_ray():
    try:
        import ray
    except ImportError:
        raise InterpError("--ray needs Ray, an optional extra: pip install -e '.[ray]'") from None
    return ray


def start_ray(settings: RaySettings):
    ray = require_ray()
    if not ray.is_initialized():
        if settings.address in ("auto", "local"):
            ray.init(num_cpus=max(settings.workers * settings.threads, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=settings.address, log_to_driver=False)
    return ray


def stop_workers(workers: list) -> None:
    """Kill a run's actors, however the run ended."""
    if workers:
        ray = require_ray()
        for worker in workers:
            ray.kill(worker)


KILL_MARKER = "INTERP_TEST_KILL_WORKER_MARKER"
"""Fault injection for the tests: when this variable names a file that does not exist yet, the first worker to
fold a batch creates it and exits at once, as a crashed or preempted worker would, mid-shard."""


def die_once_for_tests() -> None:
    marker = os.environ.get(KILL_MARKER)
    if marker:
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return
        os._exit(1)
