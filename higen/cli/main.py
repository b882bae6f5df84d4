"""The ``higen`` command: a thin layer over the library. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys

from higen.models.state import CheckpointError

# Errors a user can cause and fix: printed as one message, never as a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError, CheckpointError, OSError)


def build_parser() -> argparse.ArgumentParser:
    from higen.cli import convert, generate, info

    parser = argparse.ArgumentParser(prog="higen", description="HiGen text-to-video: generate, convert released weights, inspect models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (generate, convert, info):
        module.add_parser(sub)
    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    """Commands living in other parts of the package, added when those parts are present."""
    import importlib

    for module_name in ("higen.cli.train", "higen.cli.autoencoder", "higen.cli.evaluate", "higen.cli.world", "higen.cli.bench", "higen.cli.web", "higen.cli.evaluate_videos"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue
            raise
        module.add_parser(sub)


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
