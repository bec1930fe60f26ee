"""Several processes under ``torchrun``: joining the process group, who is who, and sums across processes.

A process started by ``torchrun`` (``WORLD_SIZE`` > 1 in its environment) joins a ``torch.distributed``
process group, ``gloo`` for CPU training and ``nccl`` for CUDA; a plain process is a world of one and
joins nothing, so every helper here is the identity for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import DistributedError

DEFAULT_TIMEOUT = 300.0  # seconds for the process group to form (and for any one collective)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run."""

    rank: int = 0
    size: int = 1
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (checkpoints, metrics, summary)."""
        return self.rank == 0

    def describe(self) -> dict[str, int | str | None]:
        """``world_size`` and ``backend``, as recorded in checkpoints and summaries."""
        return {"world_size": self.size, "backend": self.backend}


def world() -> World:
    """The current process group (a world of one when none was joined)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), dist.get_backend())


def launched_size() -> int:
    """How many processes the launcher (``torchrun``) started for this run: its ``WORLD_SIZE``, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def restarted() -> bool:
    """Whether ``torchrun --max-restarts`` restarted this process after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def resuming(resume: bool, checkpoint_dir: str | os.PathLike | None) -> bool:
    """Whether a run continues from ``checkpoint_dir``: when asked, or when restarted after a failure with one saved."""
    return resume or (restarted() and checkpoint_dir is not None and Path(checkpoint_dir, "config.json").exists())


def device_for(device: str | torch.device | None) -> torch.device:
    """The torch device this process trains on: plain ``cuda`` means this process's own GPU (``LOCAL_RANK``)."""
    device = torch.device(device or "cpu")
    if device.type == "cuda" and device.index is None and launched_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def join(device: str | torch.device | None = None, timeout: float = DEFAULT_TIMEOUT) -> World:
    """Join the process group ``torchrun`` set up in the environment (once; nccl on CUDA, else gloo).

    A process group that cannot form within ``timeout`` seconds raises :class:`DistributedError`.
    """
    current = world()
    if current.backend is not None or launched_size() == 1:
        return current
    device = device_for(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    endpoint = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        rank, limit = int(os.environ["RANK"]), timedelta(seconds=timeout)
        dist.init_process_group(backend, store=_attempt_store(rank, limit), rank=rank, world_size=launched_size(),
                                timeout=limit)
    except (RuntimeError, ValueError, KeyError, TimeoutError) as e:  # DistNetworkError/DistStoreError: RuntimeErrors
        raise DistributedError(
            f"the {launched_size()}-process group ({backend}, rendezvous {endpoint}, rank "
            f"{os.environ.get('RANK', '?')}) did not form within {timeout:g} s: are all processes started "
            f"and the endpoint reachable? ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    return world()


def _attempt_store(rank: int, timeout: timedelta) -> dist.Store:
    """The rendezvous store at ``MASTER_ADDR:MASTER_PORT``, its keys prefixed by this attempt's restart count.

    Under ``torchrun`` the store is the launcher's and outlives a restart; without the prefix, restarted
    processes would read the addresses their dead predecessors published there.
    """
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), launched_size(),
                          is_master=rank == 0 and not agent, timeout=timeout)
    return dist.PrefixStore(f"edgeadapt/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(total: int, current: World) -> range:
    """This process's contiguous share of ``range(total)`` (shares differ by at most one)."""
    return range(current.rank * total // current.size, (current.rank + 1) * total // current.size)


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over every process (in place; itself in a single process)."""
    if world().size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers, so that all start from the same weights."""
    if world().size > 1:
        for tensor in (*module.parameters(), *module.buffers()):
            dist.broadcast(tensor.data, src=0)
