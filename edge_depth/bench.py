"""``edge-depth bench``: placeholder until the benchmark lands (issue: benchmark command and pipeline speed)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("edge-depth bench: not implemented yet", file=sys.stderr)
    return 2
