"""timm's own model test battery (`tests/test_models.py` of the installed timm release), run on swinrmt's models.

The file is not copied into this repository: it comes from timm's source distribution on the package index, fetched
once per timm version with pip (`pip download --no-deps --no-binary :all: timm==VERSION`) into a cache directory
($SWINRMT_TIMM_TESTS_CACHE, else ~/.cache/swinrmt/timm-tests/VERSION/). `load()` imports it with timm's `list_models` /
`list_pretrained` narrowed to swinrmt's registered models (and `timm_compat` added to its module filters, so the tests
it runs only on the models of named timm modules, the forward_intermediates ones, take ours too): every test that
timm parametrizes over its model list then runs over ours. Models outside `FAST` get the `slow` mark.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch

FAST = ("gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano", "rmt_nano", "swin_nano")


class FetchError(RuntimeError):
    pass


def cache_dir(version: str) -> Path:
    root = os.environ.get("SWINRMT_TIMM_TESTS_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "swinrmt" / "timm-tests"
    return Path(root) / version


def fetch_test_models(version: str) -> Path:
    """timm's tests/test_models.py for `version`, from its sdist on the package index (cached)."""
    target = cache_dir(version) / "test_models.py"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
               "-q", "-d", tmp, f"timm=={version}"]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FetchError(f"{' '.join(cmd)} failed: {exc}") from exc
        sdists = list(Path(tmp).glob("timm-*.tar.gz"))
        if run.returncode or not sdists:
            tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
            raise FetchError(f"{' '.join(cmd)} failed (exit {run.returncode}): {' / '.join(tail)}")
        with tarfile.open(sdists[0]) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/tests/test_models.py")), None)
            if member is None:
                raise FetchError(f"{sdists[0].name} has no tests/test_models.py")
            text = tar.extractfile(member).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(f".{os.getpid()}.part")
    part.write_bytes(text)
    os.replace(part, target)
    return target


def _narrowed(fn, ours: set[str], module_kw: bool):
    slow = pytest.mark.slow

    def narrowed(*args, **kwargs):
        if module_kw and (kwargs.get("module") or (len(args) > 1 and args[1])):
            mods = kwargs.pop("module", None) or args[1]
            args = args[:1] + args[2:]
            kwargs["module"] = [*([mods] if isinstance(mods, str) else mods), "timm_compat"]
        names = [n for n in fn(*args, **kwargs) if n.split(".")[0] in ours]
        return [n if n.split(".")[0] in FAST else pytest.param(n, marks=slow) for n in names]

    return narrowed


def load(timm, ours: list[str], path: Path):
    """Import timm's test module from `path`, its model lists narrowed to `ours`; returns the module."""
    saved = {name: getattr(timm, name) for name in ("list_models", "list_pretrained")}
    timm.list_models = _narrowed(saved["list_models"], set(ours), True)
    timm.list_pretrained = _narrowed(saved["list_pretrained"], set(ours), False)
    # the module switches TorchScript's executor globally at import; keep ours as it was
    executor = torch._C._jit_set_profiling_executor(True)
    mode = torch._C._jit_set_profiling_mode(True)
    try:
        spec = importlib.util.spec_from_file_location("timm_tests_test_models", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        timm.list_models, timm.list_pretrained = saved["list_models"], saved["list_pretrained"]
        torch._C._jit_set_profiling_executor(executor)
        torch._C._jit_set_profiling_mode(mode)
    return module
