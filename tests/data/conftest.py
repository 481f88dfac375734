"""Fixtures for the data tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point $SWINRMT_CACHE at a fresh directory for archive tests."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SWINRMT_CACHE", str(cache))
    return cache
