"""The ``glowflow`` command line: parses arguments and dispatches to one module per command.

Every command module has ``add_parser(s)`` and ``run``; the library does the work. A user's
mistake is a ``glowflow.errors.GlowflowError``, shown as one line with exit code 2 (set
``GLOWFLOW_DEBUG=1`` for the traceback); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from glowflow import __version__, distributed
from glowflow.cli import compare, evaluate, export, latent, ood, prepare, serve, train
from glowflow.cli.common import info
from glowflow.errors import GlowflowError, first_line

COMMANDS = {
    "train": train.run,
    "eval": evaluate.run,
    "export": export.run,
    "sample": latent.sample,
    "interpolate": latent.interpolate,
    "manipulate": latent.manipulate,
    "serve": serve.run,
    "score": ood.score,
    "ood": ood.ood,
    "prepare": prepare.run,
}

# List options whose values may start with a minus sign ("--alphas -1,-0.5,0,0.5,1"), which
# argparse would otherwise take for an option.
SIGNED_LISTS = ("--alphas", "--temperatures")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glowflow", description="Glow normalizing flows: train, evaluate, sample."
    )
    parser.add_argument("--version", action="version", version=f"glowflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.add_parser(sub)
    evaluate.add_parser(sub)
    export.add_parser(sub)
    latent.add_parsers(sub)
    compare.add_parser(sub)
    serve.add_parser(sub)
    ood.add_parsers(sub)
    prepare.add_parser(sub)
    return parser


def _join_signed_lists(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    for token in argv:
        if out and out[-1] in SIGNED_LISTS and token.startswith("-"):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    info(f"warning: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = _join_signed_lists(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:  # compare passes the options it does not know on to train
        args, extra = parser.parse_known_args(argv)
    else:
        args, extra = parser.parse_args(argv), []
    if not args.command:
        parser.print_help()
        return 2
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        if args.command == "compare":
            return compare.run(args, extra)
        return COMMANDS[args.command](args)
    except GlowflowError as e:
        if os.environ.get("GLOWFLOW_DEBUG"):
            raise
        print(f"glowflow {args.command}: error: {first_line(e, 1000)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous_showwarning
        distributed.teardown()
