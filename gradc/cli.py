"""The `gradc` command line (`gradc --version`, `python -m gradc`)."""
from __future__ import annotations

import argparse

from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradc", description="gradc: PyTorch-style tensors, "
                                     "autograd and a compiler to readable C/CUDA.")
    parser.add_argument("--version", action="version", version=f"gradc {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0
