"""The ``higen`` command as a whole: every subcommand is registered."""

import argparse

from higen.cli.main import build_parser

COMMANDS = {
    "generate", "convert-vgen", "info", "train", "train-cache", "train-export", "train-autoencoder", "evaluate", "evaluate-videos", "evaluate-t2v", "world",
    "bench", "web",
}


def test_every_subcommand_is_registered():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == COMMANDS
