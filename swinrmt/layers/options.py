"""Validation of the models' string options (one place, so every bad value reads the same)."""
from __future__ import annotations

from collections.abc import Iterable


def check_choice(option: str, value: object, choices: Iterable[object]) -> None:
    """One-line ValueError naming the option, the bad value and what is accepted."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{option}={value!r} is not valid; accepted: {', '.join(map(repr, choices))}")
