"""Recipes: shipped files load, overrides are typed, and every mistake names its key."""
from pathlib import Path

import pytest
import yaml

from swinrmt.train.recipe import Recipe, load_recipe, shipped_recipes


def test_shipped_recipes_load_and_quick_is_the_cpu_default():
    assert {"quick", "cifar10", "tiny-imagenet", "mini-imagenet"} <= set(shipped_recipes())
    for name in shipped_recipes():
        assert isinstance(load_recipe(name), Recipe)
    q = load_recipe("quick")
    assert (q.model.name, q.data.name, q.img_size, q.precision) == ("gated_swinrmt_swat_nano", "digits", 32, "fp32")


def test_overrides_parse_as_yaml_and_coerce_to_field_types():
    r = load_recipe("quick", ["optim.lr=1e-3", "epochs=5", "optim.clip_grad_norm=null", "optim.betas=[0.8, 0.9]",
                              "data.aug.hflip=0.5", "model.overrides.window_size=4", "ema.enabled=true"])
    assert r.optim.lr == 1e-3 and isinstance(r.optim.lr, float)  # PyYAML alone reads "1e-3" as a string
    assert r.epochs == 5 and r.optim.clip_grad_norm is None and r.optim.betas == (0.8, 0.9)
    assert r.data.aug["hflip"] == 0.5 and r.data.aug["crop"] == "pad"  # merged into the recipe's aug dict
    assert r.model.overrides == {"window_size": 4} and r.ema.enabled is True


def test_yaml_round_trip_is_lossless(tmp_path: Path):
    r = load_recipe("cifar10", ["seed=3"])
    path = tmp_path / "r.yaml"
    path.write_text(r.to_yaml())
    assert load_recipe(str(path)) == r
    assert Recipe.from_dict(yaml.safe_load(r.to_yaml())) == r


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", ["unknown recipe key 'optim.lrr'", "accepted keys under 'optim'", "lr", "weight_decay"]),
    ("bogus=1", ["unknown recipe key 'bogus'", "epochs", "batch_size"]),
    ("optim.lr=fast", ["'optim.lr'", "expected float", "'fast'"]),
    ("epochs=2.5", ["'epochs'", "expected int", "2.5"]),
    ("epochs=0", ["'epochs'", "0", ">= 1"]),
    ("precision=fp16", ["'precision'", "'fp32', 'bf16'", "fp16"]),
    ("optim.name=lamb", ["'optim.name'", "adamw", "lamb"]),
    ("model.compile=yes please", ["'model.compile'", "expected bool"]),
    ("epochs.x=1", ["'epochs' is a value, not a section"]),
    ("label_smoothing=1.5", ["'label_smoothing'", "1.5"]),
    ("novalue", ["key=value"]),
])
def test_bad_values_name_the_key(override: str, words: list[str]):
    with pytest.raises(ValueError) as info:
        load_recipe("quick", [override])
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_key_in_a_file_and_unknown_recipe_name(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\noptim:\n  learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown recipe key 'optim.learning_rate'; accepted keys under 'optim'"):
        load_recipe(str(path))
    with pytest.raises(ValueError, match=r"unknown recipe 'nope'; shipped recipes: .*quick"):
        load_recipe("nope")
    with pytest.raises(FileNotFoundError):
        load_recipe(str(tmp_path / "missing.yaml"))
