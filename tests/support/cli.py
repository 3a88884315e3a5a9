"""Running `misomap` in the test process, as the console script does."""

from __future__ import annotations

import sys

from misomap.cli import run_cli


def run_in_process(args: list[str], capsys, log_level: str = "WARNING") -> tuple[int, str]:
    """`misomap ARGS` through the console script's entry point; (exit code, stderr + stdout)."""
    old = sys.argv
    sys.argv = ["misomap", "--log-level", log_level, *args]
    try:
        run_cli()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.err + out.out
