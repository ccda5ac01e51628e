"""Registers the command-line commands that live beside the code they drive."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_area_parsers"]


def add_area_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add each area's subcommands to ``commands`` (the ``whaled`` subparsers)."""
    from whaled.ops import add_parsers as add_ops_parsers
    from whaled.workflows.commands import add_parsers as add_workflow_parsers

    add_workflow_parsers(commands, [common])
    add_ops_parsers(commands, [common])
