"""Deterministic, resumable sampling: samplers, per-sample seeded augmentation, and the DataLoader factory.

Determinism contract: the epoch order depends only on (seed, epoch); the augmentation of sample ``i`` in epoch ``e``
only on (seed, e, i). Neither depends on the number of workers, which worker loads a sample, the batch size, or
whether the run was interrupted and resumed (``ResumableSampler.set_start``).

Seeds are mixed with splitmix64 (:func:`mix_seed`), not Python's ``hash`` (salted per process for str, and
``hash((a, b))`` is not a mixing function).

``ResumableSampler`` layout for ``world_size`` W ranks (``perm`` = the epoch's global permutation, padded or
truncated as described below):

- ``batch_size=None`` (strided): rank r takes ``perm[r::W]``. Its k-th batch of b, concatenated over ranks, holds
  exactly the samples ``perm[k*W*b:(k+1)*W*b]`` (the single-process batch k of size W*b) in interleaved order
  ``perm[k*W*b + r + W*j]``; order within a batch does not change a mean loss or its gradient.
- ``batch_size=b`` (contiguous): global batch k = ``perm[k*W*b:(k+1)*W*b]`` and rank r takes its r-th slice of b, so
  concatenating the ranks' k-th batches in rank order gives the single-process batch k element for element.

Equal work per rank (needed so no rank waits forever in a collective): the per-rank count is the same on every rank.
``drop_last=False`` pads by repeating the start of the permutation (like ``DistributedSampler``) up to
``ceil(n / W)`` per rank (strided) or up to whole global batches, ``ceil(n / (W*b)) * b`` per rank (contiguous).
``drop_last=True`` truncates to ``floor(n / W)`` (strided) or ``floor(n / (W*b)) * b`` (contiguous) per rank.
With W = 1 nothing is padded or dropped (the DataLoader's own ``drop_last`` decides about a partial last batch).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EvalShardSampler", "ResumableSampler", "SeededSamples", "build_loader", "mix_seed"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """Mix integers into a 63-bit seed (splitmix64 chained over the values); stable across processes and runs."""
    h = 0x6A09E667F3BCC909
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h >> 1


def _generator(*values: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(mix_seed(*values))
    return g


class ResumableSampler(Sampler[int]):
    """Seeded per-epoch permutation, sharded over ranks, resumable mid-epoch (layout in the module docstring).

    Call ``set_epoch(e)`` before each epoch (it also clears any ``set_start``); call ``set_start(k)`` after it to
    skip the first ``k`` samples of this rank's order for that epoch, e.g. ``k = steps_done * batch_size``.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        batch_size: int | None = None,
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.num_samples = int(num_samples)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = bool(drop_last)
        self.batch_size = batch_size
        self.epoch = 0
        self.start = 0
        n, w = self.num_samples, self.world_size
        if w == 1:
            self.per_rank = n
        elif batch_size is None:
            self.per_rank = n // w if drop_last else math.ceil(n / w)
        else:
            gb = w * batch_size
            self.per_rank = (n // gb if drop_last else math.ceil(n / gb)) * batch_size
        if self.per_rank == 0 and n > 0:
            raise ValueError(f"{n} samples give rank {rank} of {w} no samples with drop_last=True")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start = 0

    def set_start(self, index: int) -> None:
        if not 0 <= index <= self.per_rank:
            raise ValueError(f"start index {index} out of range [0, {self.per_rank}] for this rank's epoch")
        self.start = int(index)

    def global_order(self) -> torch.Tensor:
        """The epoch's permutation of ``range(num_samples)``, before padding and sharding."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=_generator(self.seed, self.epoch))

    def rank_order(self) -> list[int]:
        """This rank's full order for the current epoch (ignoring ``set_start``)."""
        perm = self.global_order()
        w = self.world_size
        total = self.per_rank * w
        if total > perm.numel() and perm.numel() > 0:  # pad by repeating the start of the permutation
            reps = math.ceil(total / perm.numel())
            perm = perm.repeat(reps)
        perm = perm[:total]
        if w == 1:
            return perm.tolist()
        if self.batch_size is None:
            return perm[self.rank :: w].tolist()
        b = self.batch_size
        return perm.view(-1, w, b)[:, self.rank, :].reshape(-1).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_order()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __repr__(self) -> str:
        return (f"ResumableSampler(n={self.num_samples}, shuffle={self.shuffle}, seed={self.seed}, rank={self.rank}, "
                f"world_size={self.world_size}, drop_last={self.drop_last}, batch_size={self.batch_size})")


class EvalShardSampler(Sampler[int]):
    """Each sample exactly once across ranks, in order, no padding: rank r gets the r-th of W contiguous chunks whose
    sizes differ by at most one (the first ``n % W`` ranks get one more). Gather and concatenate in rank order to
    recover ``range(n)``."""

    def __init__(self, num_samples: int, rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        base, extra = divmod(int(num_samples), world_size)
        self.begin = rank * base + min(rank, extra)
        self.end = self.begin + base + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin


class SeededSamples(Dataset):
    """Wrap ``dataset`` and ``transform``: item ``i`` -> ``(transform(image, g), label, i)``, ``g`` seeded from
    ``mix_seed(seed, epoch, i)``.

    The epoch lives in a shared-memory tensor, so ``set_epoch`` in the main process reaches persistent DataLoader
    workers (call it before iterating the loader for that epoch, never during).
    """

    def __init__(self, dataset: Any, transform: Callable[..., torch.Tensor], seed: int) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        i = int(i)
        img, label = self.dataset[i]
        return self.transform(img, _generator(self.seed, self.epoch, i)), int(label), i

    def __getattr__(self, name: str) -> Any:  # classes, num_classes, targets, ... of the wrapped dataset
        if name.startswith("_") or name in ("dataset", "transform", "seed"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)


def build_loader(
    samples: SeededSamples,
    sampler: Sampler[int] | Sized,
    batch_size: int,
    *,
    num_workers: int = 0,
    drop_last: bool,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``samples`` in ``sampler`` order. Batches are ``(x float (B,3,H,W), y int64, index int64)``.

    With workers: persistent (no re-fork per epoch), one torch thread each (so W workers do not oversubscribe the
    cores), prefetch 2 batches each. Batches are identical for any ``num_workers`` (see the module docstring).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, worker_init_fn=_worker_init, prefetch_factor=2)
    return DataLoader(
        samples,
        batch_size=batch_size,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        **kwargs,
    )
