"""The ``higen`` command: a thin layer over the library. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys

from higen.cli import autoencoder, bench, convert, evaluate, evaluate_t2v, evaluate_videos, generate, info, train, web, world
from higen.io.checkpoint import CheckpointError

# Every command module, in the order ``higen --help`` lists them; each adds its subcommand(s).
COMMANDS = (generate, convert, info, train, autoencoder, evaluate, evaluate_videos, evaluate_t2v, world, bench, web)

# Errors a user can cause and fix: printed as one message, never as a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError, CheckpointError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="higen", description="HiGen text-to-video: generate, convert released weights, inspect models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes a positional list only in one run, so `key=value` overrides given after options
    # (`higen train-cache OUT --kind video data.fps=4`) come back unparsed: they are overrides too.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        print(f"higen {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
