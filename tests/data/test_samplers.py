"""Samplers and loaders: sharding layout, resume, eval coverage, worker-count independence, seed mixing."""
from __future__ import annotations

import itertools

import pytest
import torch

from swinrmt.data import (
    EvalShardSampler,
    ResumableSampler,
    SeededSamples,
    build_dataset,
    build_loader,
    build_transform,
)
from swinrmt.data.sampling import mix_seed


def _batches(order: list[int], b: int) -> list[list[int]]:
    return [order[k:k + b] for k in range(0, len(order), b)]


def test_permutation_depends_only_on_seed_and_epoch():
    a = ResumableSampler(100, shuffle=True, seed=3)
    b = ResumableSampler(100, shuffle=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(100))
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(ResumableSampler(100, shuffle=True, seed=4)) != list(ResumableSampler(100, shuffle=True, seed=3))
    assert list(ResumableSampler(10, shuffle=False, seed=3)) == list(range(10))


@pytest.mark.parametrize("n", [96, 101])
def test_contiguous_layout_concatenates_to_the_single_process_batch(n):
    w, b = 4, 3
    single = ResumableSampler(n, shuffle=True, seed=1, batch_size=w * b)
    single.set_epoch(5)
    ranks = [ResumableSampler(n, shuffle=True, seed=1, rank=r, world_size=w, batch_size=b) for r in range(w)]
    for s in ranks:
        s.set_epoch(5)
    per_rank = [_batches(list(s), b) for s in ranks]
    assert len({len(p) for p in per_rank}) == 1 and all(len(batch) == b for p in per_rank for batch in p)
    glob = _batches(single.global_order().tolist(), w * b)
    for k, rank_batches in enumerate(zip(*per_rank)):
        concat = list(itertools.chain(*rank_batches))
        if k < len(glob) and len(glob[k]) == w * b:
            assert concat == glob[k]  # element for element
        else:  # the last, partial global batch is padded from the permutation start
            assert concat[: len(glob[k])] == glob[k]


@pytest.mark.parametrize("n, drop_last", [(96, False), (101, False), (101, True)])
def test_strided_layout_tiles_the_global_permutation(n, drop_last):
    w, b = 4, 3
    ranks = [ResumableSampler(n, shuffle=True, seed=1, rank=r, world_size=w, drop_last=drop_last) for r in range(w)]
    orders = [list(s) for s in ranks]
    assert len({len(o) for o in orders}) == 1  # equal work per rank
    perm = ranks[0].global_order().tolist()
    interleaved = [orders[r][j] for j in range(len(orders[0])) for r in range(w)]
    expected = perm[: len(interleaved)] if drop_last else (perm + perm)[: len(interleaved)]
    assert interleaved == expected
    if drop_last:
        assert len(set(interleaved)) == len(interleaved)
    else:
        assert set(interleaved) == set(range(n))
    for k in range(len(orders[0]) // b):  # k-th batches of all ranks == single-process batch k as a set
        got = sorted(itertools.chain(*(o[k * b:(k + 1) * b] for o in orders)))
        assert got == sorted(expected[k * w * b:(k + 1) * w * b])


def test_set_start_skips_exactly_and_set_epoch_clears_it():
    s = ResumableSampler(50, shuffle=True, seed=0, rank=1, world_size=2)
    s.set_epoch(7)
    full = list(s)
    s.set_start(12)
    assert list(s) == full[12:] and len(s) == len(full) - 12
    s.set_epoch(8)
    assert len(list(s)) == len(full)
    with pytest.raises(ValueError, match="start index"):
        s.set_start(len(full) + 1)


@pytest.mark.parametrize("n, w", [(10, 3), (7, 7), (5, 8), (0, 2)])
def test_eval_shards_cover_every_sample_once(n, w):
    parts = [list(EvalShardSampler(n, r, w)) for r in range(w)]
    assert list(itertools.chain(*parts)) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_mix_seed_is_stable_and_sensitive():
    assert mix_seed(0, 0, 0) == 1333689347359979562  # golden value: changing the mix changes every run's stream
    assert mix_seed(1, 2, 3) != mix_seed(1, 3, 2) and mix_seed(1) != mix_seed(1, 0)
    assert 0 <= mix_seed(-1, 2**70) < 2**63


def test_loader_batches_identical_for_0_and_2_workers_and_across_epochs():
    ds = build_dataset("digits", "test", img_size=16)
    t = build_transform(16, True, mean=ds.mean, std=ds.std, aug={"randaugment": "rand-m9-n2", "random_erasing": 0.25})
    runs = []
    for workers in (0, 2):
        samples = SeededSamples(ds, t, seed=11)
        sampler = ResumableSampler(len(ds), shuffle=True, seed=11)
        loader = build_loader(samples, sampler, 32, num_workers=workers, drop_last=True)
        got = []
        for epoch in (0, 1):  # persistent workers must see the new epoch
            samples.set_epoch(epoch)
            sampler.set_epoch(epoch)
            got.append([b for _, b in zip(range(3), loader)])
        runs.append(got)
    for e in range(2):
        for (x0, y0, i0), (x2, y2, i2) in zip(runs[0][e], runs[1][e]):
            assert x0.shape == (32, 3, 16, 16) and y0.dtype == torch.int64
            assert torch.equal(x0, x2) and torch.equal(y0, y2) and torch.equal(i0, i2)
    assert not torch.equal(runs[0][0][0][0], runs[0][1][0][0])  # a new epoch is a new stream
