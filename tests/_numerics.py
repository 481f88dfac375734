"""Record what every registered nano and tiny model computes on a fixed input, as hashes of the exact bits.

    PYTHONPATH=<a checkout> python tests/_numerics.py OUT.json [--threads 2]

Uses only the public API (`create_model`, `list_models`), so the same script records any revision; comparing two
recordings says whether a change kept the numerics bit-identical (`tests/test_numerics_unchanged.py`). Per model:
the logits and every parameter gradient in train mode, in eval mode with autograd, and the logits in eval mode under
`no_grad` (where the inference-only routes run), at 64 px and at 40x56 (maps that windows pad), CPU float32.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys

import torch

SIZES = ("nano", "tiny")
INPUTS = ((2, 64, 64), (2, 40, 56))


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:20]


def record_model(name: str) -> dict[str, str]:
    import swinrmt

    out: dict[str, str] = {}
    torch.manual_seed(0)
    model = swinrmt.create_model(name, num_classes=10)
    for b, h, w in INPUTS:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(b, 3, h, w, generator=g)
        probe = torch.randn(b, 10, generator=g)
        for mode in ("train", "eval", "infer"):
            model.train(mode == "train")
            model.zero_grad(set_to_none=True)
            torch.manual_seed(2)  # drop path draws the same masks on both sides
            tag = f"{name}/{h}x{w}/{mode}"
            if mode == "infer":
                with torch.no_grad():
                    out[f"{tag}/logits"] = digest(model(x))
                continue
            y = model(x)
            (y * probe).sum().backward()
            out[f"{tag}/logits"] = digest(y)
            for pname, p in model.named_parameters():
                if p.grad is not None:
                    out[f"{tag}/grad/{pname}"] = digest(p.grad)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", nargs="*", help="default: every registered *_nano and *_tiny model")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import swinrmt

    names = a.models or [m for m in swinrmt.list_models() if m.rsplit("_", 1)[-1] in SIZES]
    rec: dict[str, str] = {}
    for name in names:
        rec.update(record_model(name))
        print(f"{name}: recorded", file=sys.stderr, flush=True)
    with open(a.out, "w") as f:
        json.dump({"swinrmt": swinrmt.__file__, "torch": torch.__version__, "threads": a.threads, "hashes": rec}, f,
                  indent=0, sort_keys=True)


if __name__ == "__main__":
    main()
