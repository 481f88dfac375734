"""A small keyed cache for constant tables (decay, masks, rotary codes).

Tables depend only on geometry, hyper-parameters, dtype and device, so they are built once per key and reused by
every forward. Keys hold only hashable Python values (ints, floats, tuples, torch.dtype, torch.device).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

import torch

_MAX_ENTRIES = 512
_TABLES: "OrderedDict[Hashable, torch.Tensor | tuple[torch.Tensor, ...]]" = OrderedDict()
stats = {"hits": 0, "misses": 0}


def cached(key: Hashable, build: Callable[[], torch.Tensor | tuple[torch.Tensor, ...]]):
    """Return the table stored under `key`, building it on the first request (LRU-bounded).

    Under `torch.compile` / `torch.export` the table is built inline instead: the compiler folds the
    (input-independent) construction into the graph, whereas reading and mutating a global dict would guard on it and
    recompile on every new key. Built from constants, a table needs no gradient mode: a `no_grad` block here became a
    `wrap_with_set_grad_enabled` node that torch.export's verifier rejects (torch 2.13).
    """
    if torch.compiler.is_compiling():
        return build()
    hit = _TABLES.get(key)
    if hit is not None:
        stats["hits"] += 1
        _TABLES.move_to_end(key)
        return hit
    stats["misses"] += 1
    # never an inference tensor: a table first built under torch.inference_mode() must still serve training later
    with torch.inference_mode(False), torch.no_grad():
        value = build()
    _TABLES[key] = value
    if len(_TABLES) > _MAX_ENTRIES:
        _TABLES.popitem(last=False)
    return value


def clear() -> None:
    """Drop every cached table (tests use it to count builds)."""
    _TABLES.clear()
    stats["hits"] = stats["misses"] = 0
