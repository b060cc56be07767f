"""User-facing errors and the CLI wrapper that prints them without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from difflib import get_close_matches


class SolverError(Exception):
    """A problem the user can fix: bad input, bad config, a missing file.

    The message must say what is wrong, where (file, column, key or row) and how to fix it.
    """


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """A hint naming the closest valid choices, or listing them when none is close."""
    choices = sorted(set(map(str, choices)))
    close = get_close_matches(str(value), choices, n=3, cutoff=0.6)
    if close:
        return f"did you mean {', '.join(repr(c) for c in close)}?"
    if len(choices) <= 30:
        return f"valid: {', '.join(choices)}"
    return f"{len(choices)} valid choices, e.g. {', '.join(choices[:10])}"


def run_cli(main: Callable[[], object]) -> None:
    """Run a CLI entry point; a SolverError becomes one 'error:' line and exit status 2."""
    try:
        main()
    except SolverError as err:
        from solver.base.cli import error_message

        print(f"error: {error_message(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: files written so far are complete; partial work stays in *.partial", file=sys.stderr)
        sys.exit(130)
