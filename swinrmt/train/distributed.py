"""Process-group setup for `torchrun` (NCCL on GPU, gloo on CPU) and the few collectives the trainer needs.

Without torchrun's environment (WORLD_SIZE unset or 1) everything here degrades to a single-process no-op, so the
trainer has one code path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto`: cuda (this process's local GPU) if available, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available: {cuda_absence()} "
                             "(use --device cpu)")
        count = torch.cuda.device_count()
        if dev.index is None:
            if local_rank >= count:  # `local_rank % count` would put two ranks on one GPU: NCCL's "duplicate GPU"
                raise ValueError(f"LOCAL_RANK={local_rank} but only {count} CUDA device(s) are visible to this "
                                 f"process: start at most {count} process(es) per node (torchrun --nproc-per-node), "
                                 "or check CUDA_VISIBLE_DEVICES")
            dev = torch.device("cuda", local_rank)
        elif dev.index >= count:
            raise ValueError(f"device {device!r} requested but only {count} CUDA device(s) are visible")
        torch.cuda.set_device(dev)
    return dev


def cuda_absence() -> str:
    """Why torch sees no GPU, in a few words: a CPU-only build, or a CUDA build that finds no device."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return f"this torch ({torch.__version__}, CUDA {torch.version.cuda}) finds no CUDA device"


def setup(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (once), and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank, world, local_rank, dev)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum_(*tensors: torch.Tensor) -> None:
    """In-place SUM over ranks (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def mean_over_ranks(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / dist.get_world_size()
