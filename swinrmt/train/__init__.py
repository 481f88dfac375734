"""Training and evaluation: recipes (YAML -> dataclasses), the loop, checkpoints, metrics, DDP.

    from swinrmt.train import load_recipe, train, evaluate
    result = train(load_recipe("quick", ["epochs=3"]), "runs/demo")       # dict: test_top1, best_top1, wall_s, ...
    report = evaluate("runs/demo")                                        # top1/top5, per-class, confusion, ECE

Run directory: config.yaml (the resolved recipe), metrics.jsonl, curves.png, eval.json + confusion.png (final
evaluation), checkpoints/{last,best}.safetensors. See `swinrmt.train.loop` for what makes a resume exact.
"""
from .evaluation import evaluate
from .loop import train
from .recipe import Recipe, load_recipe, shipped_recipes

__all__ = ["Recipe", "evaluate", "load_recipe", "shipped_recipes", "train"]
