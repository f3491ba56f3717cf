"""The few distributed helpers the trainer needs, apart from its loop (as torchvision's ``references/*/utils.py``).

Under ``torchrun`` every process reads its place from the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``); without it there is one process and every helper here is a no-op, so the same
code runs on a laptop and on many GPUs.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def process_place() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def local_cores() -> int:
    """The CPU cores this process may use, shared evenly among the processes on this machine."""
    return max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def setup(device: torch.device, world_size: int) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPUs); CPU processes share the cores."""
    if world_size == 1:
        return
    if device.type == "cpu":
        torch.set_num_threads(local_cores())
    else:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def teardown(world_size: int) -> None:
    if world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(t: torch.Tensor, world_size: int, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """``t`` summed (or ``op``) over every process, in place."""
    if world_size > 1:
        dist.all_reduce(t, op=op)
    return t


def any_rank(flags: list[bool], device: torch.device, world_size: int) -> list[bool]:
    """Each flag True on every process if it is True on any (so the processes decide together)."""
    t = torch.tensor([float(f) for f in flags], device=device if world_size > 1 else "cpu")
    return [bool(v) for v in all_reduce(t, world_size, dist.ReduceOp.MAX).tolist()]


def broadcast(obj, world_size: int):
    """Rank 0's ``obj`` on every process."""
    if world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def count_distinct(items: list, world_size: int) -> int:
    """How many distinct ``items`` all processes together hold."""
    if world_size == 1:
        return len(set(items))
    every: list = [None] * world_size
    dist.all_gather_object(every, items)
    return len(set().union(*every))


def rank0_first(fn, rank: int, world_size: int, others: bool, errors: tuple[type[Exception], ...] = ()):
    """Run ``fn`` on rank 0, then (if ``others``) on the other ranks → its result.

    An exception of ``errors`` on rank 0 is raised on every rank (with rank 0's message), so no
    process waits forever for one that gave up. Use it for work done once per machine
    (generating a data set, downloading weights into a shared cache).
    """
    result, error = None, None
    if rank == 0:
        try:
            result = fn()
        except errors as e:
            error = (type(e), str(e))
    error = broadcast(error, world_size)
    if error is not None:
        raise error[0](error[1])
    if rank != 0 and others:
        result = fn()
    return result
