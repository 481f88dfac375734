"""`python tests/train/run_cli.py ARGS...` = `swinrmt ARGS...` with the test models registered (for subprocesses)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_tiny_model  # noqa: E402,F401

from swinrmt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
