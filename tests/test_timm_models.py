"""timm's own model battery (`tests/test_models.py` of the installed timm release) on every swinrmt model.

What a timm user expects of a registered model is what timm tests on its own: the file is fetched from timm's source
distribution (see `tests/_timm_battery.py`), imported with its model lists narrowed to ours, and the tests below are
its test functions, collected here. By default they run on the four nano models; `-m slow` adds the registered sizes.

Locally, without timm or without network for the first fetch, this module skips with the reason; in CI (`CI` set,
as `.ci/run` does) it fails instead: a test meant to run in CI must not skip there.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def _load_helper(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str):
    if IN_CI:
        raise RuntimeError(f"{reason}; CI must run timm's model battery, not skip it")
    pytest.skip(reason, allow_module_level=True)


_shim, battery = _load_helper("_timm_shim"), _load_helper("_timm_battery")
try:
    timm = _shim.import_timm()
except ImportError as exc:
    _unavailable(f"timm is not installed ({exc}); pip install -c constraints.txt -e '.[test]'")

import swinrmt  # noqa: E402
import swinrmt.timm_compat  # noqa: E402,F401  (registers every model with timm)

OURS = swinrmt.list_models()
try:
    PATH = battery.fetch_test_models(timm.__version__)
except battery.FetchError as exc:
    _unavailable(f"cannot fetch timm {timm.__version__}'s tests/test_models.py: {exc}")
TIMM_TESTS = battery.load(timm, OURS, PATH)

# timm's tests that apply to our models: each runs over every registered model (the nano ones by default).
RUN = (
    "test_model_forward",  # forward; grad checkpointing keeps the output
    "test_model_backward",  # every parameter gets a gradient
    "test_model_default_cfgs",  # cfgs, head / pooling API, device= / dtype= (meta), reset_classifier, frozen params
    "test_model_forward_features",  # features_only
    "test_model_forward_intermediates_features",  # features_only, feature_cls="getter"
    "test_model_forward_intermediates",  # forward_intermediates
    "test_prune_intermediate_layers_contract",  # prune_intermediate_layers / stop_early taps (unmarked in timm's CI)
    "test_model_forward_fx",  # torch.fx trace (torchvision's feature extraction): output equals eager
    "test_model_backward_fx",  # traced in train mode: every parameter gets a gradient
)
# timm's tests over its model list that do not run here, with the reason.
EXCLUDED = {
    "test_model_inference": "pretrained weights and reference outputs downloaded from the Hugging Face Hub: swinrmt "
                            "hosts no weights (none of ours is in list_pretrained)",
    "test_model_load_pretrained": "pretrained weight download (none of ours has hosted weights)",
    "test_model_features_pretrained": "pretrained weight download (none of ours has hosted weights)",
    "test_model_forward_torchscript": "TorchScript is out of scope (issue 37)",
    "test_model_forward_fx_torchscript": "TorchScript of the FX-traced model: TorchScript is out of scope",
    "test_model_default_cfgs_non_std": "for timm's non-standard families only (name filters vit_*, deit*, ...): none "
                                       "of ours matches; ours run test_model_default_cfgs",
}

cfg_device = TIMM_TESTS.cfg_device  # the fixture test_model_default_cfgs takes
for _name in RUN:
    globals()[_name] = getattr(TIMM_TESTS, _name)
del _name


def _model_params(fn) -> list[str]:
    """The model names a timm test function is parametrized with (after narrowing: ours, or timm's fixed names)."""
    names = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize" and "model_name" in mark.args[0]:
            for value in mark.args[1]:
                value = value.values[0] if hasattr(value, "values") else value
                names.append(value[0] if isinstance(value, tuple) else value)
    return names


def test_battery_covers_every_test_that_applies_to_our_models():
    """Every test of timm's file parametrized over our models runs here or is excluded with a reason, and runs on
    every registered model: a new timm release that adds one fails here rather than passing unnoticed."""
    applies = {name for name, fn in vars(TIMM_TESTS).items()
               if name.startswith("test_") and callable(fn) and set(_model_params(fn)) & set(OURS)}
    assert applies - set(EXCLUDED) == set(RUN), sorted(applies ^ set(RUN))
    for name in RUN:
        assert sorted(_model_params(getattr(TIMM_TESTS, name))) == sorted(OURS), name
