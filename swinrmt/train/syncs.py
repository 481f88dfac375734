"""Count the calls that make the host wait for an accelerator: the check that keeps a training step sync-free.

A GPU step of these small models is bound by kernel launches: the host must stay ahead of the device, and every call
that needs a device value on the host (`.item()`, `float(t)`, `bool(t)`, `.tolist()`, `.cpu()`, `.numpy()`), every
data-dependent output shape (boolean-mask indexing, `nonzero`, `masked_select`, `unique`) and every tensor made from
host data (`torch.tensor(...)`, `torch.as_tensor(...)`: a blocking copy to the device) stalls it. On a CPU none of
these waits, but the calls are the same, so counting them during CPU steps (`HostSyncCounter`) catches a sync before
it reaches a GPU. `tests/train/test_host_syncs.py` holds the trainer's step to zero; `benchmarks/gpu/smoke.py` counts
them on the GPU too.
"""
from __future__ import annotations

import collections
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: aten ops that read a device value on the host or whose output size depends on device data
SYNC_OPS = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten._unique2", "aten.unique_dim",
            "aten.unique_consecutive", "aten.repeat_interleave"}
#: aten ops that make a tensor from host data (on a GPU: a blocking host-to-device copy)
HOST_DATA_OPS = {"aten.lift_fresh"}
#: Tensor methods that copy to the host without going through a dispatched op on a CPU tensor
HOST_METHODS = ("tolist", "numpy", "cpu")


class HostSyncCounter(TorchDispatchMode):
    """`with HostSyncCounter() as c: ...`; then `c.total` and `c.counts` ({op or method: calls}).

    Counts the ops of `SYNC_OPS` and `HOST_DATA_OPS`, boolean-mask indexing (`aten.index` with a bool index) and the
    `Tensor` methods of `HOST_METHODS`, whatever device the tensors are on (so a CPU run shows what a GPU run would
    wait for). `c.paused()` suspends counting for host-only work that a GPU run does on CPU tensors too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self._saved: dict[str, Any] = {}
        self._paused = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self._paused:
            name = str(func.overloadpacket)
            if name in SYNC_OPS or name in HOST_DATA_OPS:
                self.counts[name] += 1
            elif name == "aten.index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                              for i in (args[1] if len(args) > 1 else ()) if i is not None):
                self.counts["aten.index (bool mask)"] += 1
        return func(*args, **kwargs)

    def __enter__(self):
        for name in HOST_METHODS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def wrapped(t, *a, _name=name, _original=original, **kw):
                if not self._paused:
                    self.counts[f"Tensor.{_name}"] += 1
                return _original(t, *a, **kw)

            setattr(torch.Tensor, name, wrapped)
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for name, original in self._saved.items():
                setattr(torch.Tensor, name, original)
            self._saved.clear()

    def paused(self):
        counter = self

        class _Paused:
            def __enter__(self):
                counter._paused += 1

            def __exit__(self, *exc):
                counter._paused -= 1

        return _Paused()
