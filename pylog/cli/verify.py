"""``pylog verify``: (to be written)."""

from __future__ import annotations

import argparse


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to ``pylog``."""
