"""Data: datasets by name or path, generator-driven transforms, mixup/cutmix, resumable samplers, loaders.

Everything random takes an explicit seed or ``torch.Generator`` so a run is reproducible for any worker count and
after a resume. See each module's docstring for the formats, the augmentation defaults and the sampler layout.
"""
from .datasets import DATASETS, ClassificationDataset, build_dataset
from .mix import MixupCutmix
from .sampling import EvalShardSampler, ResumableSampler, SeededSamples, build_loader
from .transforms import Transform, build_transform

__all__ = [
    "DATASETS",
    "ClassificationDataset",
    "EvalShardSampler",
    "MixupCutmix",
    "ResumableSampler",
    "SeededSamples",
    "Transform",
    "build_dataset",
    "build_loader",
    "build_transform",
]
