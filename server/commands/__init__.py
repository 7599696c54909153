"""Sub-commands of the ``ganpaint`` CLI, each a small module with ``add_arguments`` and ``run``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Command", "CommandError", "COMMANDS"]


class CommandError(Exception):
    """Bad input to a command: printed as a one-line error, exit status 2."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


def _load() -> list[Command]:
    from server.commands import (
        brushes,
        cache,
        dissect,
        dynamics,
        evaluate,
        featviz,
        invert,
        netdissect,
        render,
        serve,
        topk,
        train,
        world,
        zoo,
    )

    return [serve.COMMAND, render.COMMAND, dissect.COMMAND, brushes.COMMAND, dynamics.COMMAND, netdissect.COMMAND,
            featviz.COMMAND, topk.COMMAND, train.COMMAND, evaluate.COMMAND, zoo.COMMAND, world.COMMAND, cache.COMMAND,
            invert.COMMAND]


COMMANDS: list[Command] = _load()
