"""`python -m swinrmt ...` (and `torchrun -m swinrmt train ...`)."""
import sys

from .cli import main

sys.exit(main())
