"""Issue 38, models and tools: empty batches, hostile metadata, user files, one-line errors. Each test failed on the
code before the fix (docs/reliability.md)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EMPTY = """
import sys, torch, swinrmt
for name in sys.argv[1:]:
    m = swinrmt.create_model(name, num_classes=10, img_size=32).eval()
    with torch.no_grad():
        assert tuple(m(torch.zeros(0, 3, 32, 32)).shape) == (0, 10), name
        assert m.forward_features(torch.zeros(0, 3, 32, 32)).shape[0] == 0, name
    m.train()
    x = torch.zeros(0, 3, 32, 32, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape, name
print("ok")
"""


def test_an_empty_batch_gives_an_empty_result_on_every_route():
    """In a subprocess: on the old code the C++ depthwise kernel killed Python with SIGFPE."""
    env = _env()
    proc = subprocess.run([sys.executable, "-c", EMPTY, "rmt_nano", "gated_swinrmt_swat_nano",
                           "gated_swinrmt_retention_nano", "swin_nano"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_bench_with_an_empty_batch_is_one_line():
    """In a subprocess: on the old code this was a SIGFPE."""
    proc = subprocess.run([sys.executable, "-m", "swinrmt", "bench", "--models", "rmt_nano", "--batch", "0",
                           "--steps", "1", "--warmup", "0", "--no-memory"], capture_output=True, text=True,
                          env=_env(), timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "--batch" in err[0], (proc.returncode, proc.stderr[-2000:])


def test_bad_input_is_one_line_that_names_it(tmp_path, capsys):
    from swinrmt.cli import main

    def _cli(*argv: str) -> tuple[int, list[str]]:
        rc = main(list(argv))
        return rc, capsys.readouterr().err.strip().splitlines()

    rc, err = _cli("export", "--model", "rmt_nano", "--format", "onnx", "--input-size", "0", "-5",
                   "--out", str(tmp_path / "m.onnx"))
    assert rc == 2 and len(err) == 1 and "--input-size" in err[0], err
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    rc, err = _cli("ladder", str(afile), "--out", str(tmp_path / "l"))
    assert rc == 2 and len(err) == 1 and "a.txt" in err[0], err
    rc, err = _cli("train", "--out", str(tmp_path / "r"), "--no-progress", "--set", "model.name=rmt_nano",
                   "model.overrides.embed_dims=foo", "data.limit_train=32", "data.limit_test=8", "epochs=1")
    assert rc == 2 and len(err) == 1 and "embed_dims='foo'" in err[0], err
