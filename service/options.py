"""The serving command's options, one place for ``python -m service`` and
``spherical-shapes serve``: each sets one environment variable that :mod:`service.settings`
reads (every other setting is an environment variable only). No heavy imports here: the
command-line parser is built before anything is served."""

from __future__ import annotations

import argparse
import os
from collections.abc import MutableMapping
from pathlib import Path

# (flag, type, the variable it sets)
SERVE_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("--model", Path, "SHAPES_MODEL_PATH"),
    ("--gallery", Path, "SHAPES_GALLERY_PATH"),
    ("--host", str, "SHAPES_HOST"),
    ("--port", int, "SHAPES_PORT"),
)


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    for flag, type_, variable in SERVE_OPTIONS:
        parser.add_argument(flag, type=type_, default=None, help=f"sets {variable}")


def apply_serve_options(
    args: argparse.Namespace, environ: MutableMapping[str, str] = os.environ
) -> None:
    """The given options into the environment, before the settings are first read."""
    for flag, _, variable in SERVE_OPTIONS:
        value = getattr(args, flag.removeprefix("--"))
        if value is not None:
            environ[variable] = str(value)
