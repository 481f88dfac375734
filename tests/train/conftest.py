import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_tiny_model  # noqa: E402,F401  (registers the test models)


@pytest.fixture
def cli(capsys):
    """Run `swinrmt ...` in-process; returns (exit code, stdout, stderr)."""
    from swinrmt.cli import main

    def run(*argv: str):
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err

    return run
