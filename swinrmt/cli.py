"""The `swinrmt` command line: parses, then calls library functions that the tests also call.

Each sub-command lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`; this file only
routes, so importing it stays cheap and one broken sub-command cannot take the others down.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("swinrmt.models.summary", "list registered models with parameters and FLOPs"),
    "compare": ("swinrmt.compare", "train several models under one recipe and seeds; report with paired statistics"),
    "ladder": ("swinrmt.ladder", "plot how the gaps between models move with the training budget (several reports)"),
    "export": ("swinrmt.export", "export a model to ONNX / torch.export, or a trainer checkpoint to the hub layout"),
    "viz": ("swinrmt.viz", "plot decay / ALiBi profiles, attention maps and G1 gate maps (PNG)"),
    "train": ("swinrmt.train.cli_train", "train a model from a recipe (default: the quick CPU recipe)"),
    "eval": ("swinrmt.train.cli_eval", "evaluate a checkpoint: top-1/5, per-class, confusion matrix, ECE"),
    "bench": ("swinrmt.bench", "speed benchmark: images/s, step latency, peak memory, FLOPs, MFU (JSON report)"),
}


class CLIError(Exception):
    """An error the user caused: printed as one line, exit code 2, no traceback."""


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swinrmt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if wanted == name:  # only the chosen command pays for its imports
            importlib.import_module(module).add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (CLIError, FileNotFoundError, ValueError, TypeError, KeyError) as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"swinrmt {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"swinrmt {args.command}: interrupted", file=sys.stderr)
        return 130
