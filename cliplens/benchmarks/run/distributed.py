"""torch.distributed for the benchmark: shard the images, sum the metric states, let rank 0 write.

Under ``torchrun --nproc_per_node N cliplens bench ...`` (``WORLD_SIZE`` > 1 in
the environment) every process runs the same command; rank ``r`` takes dataset
indices ``r::N``. Metric states are sums, so one ``all_reduce(SUM)`` per state
gives every rank the states of the whole dataset and ``compute()`` returns the
single-process numbers (up to float summation order). The backend is ``nccl``
when the benchmark device is CUDA, else ``gloo``. Outside torchrun a
:class:`DistContext` with ``world_size == 1`` makes every collective a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ...errors import CliplensError

T = TypeVar("T")


@dataclass
class DistContext:
    """Rank and world size of this process, and the collectives the runner needs."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    #: True when this context initialised the process group (and must destroy it)
    owns_group: bool = False
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's part of ``indices``: positions ``rank::world_size``."""
        return list(indices[self.rank :: self.world_size])

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over ranks (a new tensor, same dtype and device as the input)."""
        if not self.enabled:
            return tensor
        import torch.distributed as dist

        work = tensor.detach().to(self.device).clone()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work.to(tensor.device)

    def all_reduce_states(self, metrics: Sequence[Any]) -> None:
        """Replace every metric's states by their sum over ranks (in place, via ``load_states``)."""
        if not self.enabled:
            return
        for metric in metrics:
            metric.load_states({name: self.all_reduce_sum(value) for name, value in metric.states().items()})

    def gather(self, obj: T) -> list[T]:
        """``obj`` of every rank, in rank order (pickled; keep it small)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def world_from_env() -> tuple[int, int]:
    """``(rank, world_size)`` from ``RANK`` / ``WORLD_SIZE`` (``(0, 1)`` when not under torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise CliplensError("WORLD_SIZE and RANK must be integers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise CliplensError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent: launch with torchrun")
    return rank, world


def init_distributed(device: str | torch.device | None = None) -> DistContext:
    """Join the process group torchrun describes, or return a single-process context.

    Args:
        device: the benchmark device; CUDA selects ``nccl`` and ``cuda:LOCAL_RANK``
            for this process (a bare ``cuda`` becomes ``cuda:LOCAL_RANK``).
    Returns:
        A :class:`DistContext`; call :meth:`DistContext.close` when done.
    """
    from ...devices import parse_device

    rank, world = world_from_env()
    wanted = parse_device(device)  # the one device parser: --device gpu / auto / mps is one line
    if world == 1:
        return DistContext(device=wanted)
    import torch.distributed as dist

    if wanted.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        wanted = torch.device("cuda", local if wanted.index is None else wanted.index)
        torch.cuda.set_device(wanted)
        backend = "nccl"
    else:
        backend = "gloo"
    if dist.is_initialized():
        return DistContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            backend=dist.get_backend(),
            owns_group=False,
            device=wanted,
        )
    dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, backend=backend, owns_group=True, device=wanted)
