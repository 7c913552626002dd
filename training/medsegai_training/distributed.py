"""One process, or one of many under ``torchrun`` (DistributedDataParallel).

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; with
``WORLD_SIZE > 1`` :func:`session` joins the process group (NCCL on CUDA, Gloo on the CPU) and
leaves it at the end. Without them everything below is a no-op and training runs in this process
alone. Multi-node runs need the run folder on storage every node sees: rank 0 writes the
checkpoints and every rank reads them to resume.

A torchrun process can set up its process group only once (a second default group after
``destroy_process_group`` may read the first one's stale rendezvous keys and hang): to train
several times in one process, hold a :func:`session` around all of them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not started by torchrun), from the environment alone."""
    return _env_int("RANK", 0) == 0


def select_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``cuda:<local_rank>`` for ``"auto"`` when CUDA is available, else the CPU; ``"cpu"`` and
    ``"cuda"`` force a choice (``"cuda"`` without a GPU is an error)."""
    if preference not in DEVICES:
        raise ValueError(f"unknown device {preference!r}; choose from {', '.join(DEVICES)}")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


@dataclass
class Distributed:
    """This process's place in the run. ``world_size == 1``: a single process."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar tensor over all ranks."""
        if not self.enabled:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over all ranks (in place; returned for convenience)."""
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel (which copies rank 0's weights to every rank)."""
        if not self.enabled:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


@contextmanager
def session(device: str = "auto") -> Iterator[Distributed]:
    """The process's :class:`Distributed`; joins (and finally leaves) the process group when
    started by torchrun with several processes, or uses the one the caller already joined."""
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    chosen = select_device(device, local_rank)
    if world_size == 1:
        yield Distributed(chosen)
        return
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    try:
        yield Distributed(chosen, dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_WORLD_SIZE", world_size))
    finally:
        if owner:
            dist.destroy_process_group()
