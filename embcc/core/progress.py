"""Progress lines for long steps (export stages, calibration batches, verify probes, bench regimes).

On stderr, and only when stderr is a terminal: logs, pipes and CI output stay clean. `configure(False)` (the
CLI's --quiet) turns them off, `configure(True)` on (tests), `configure(None)` back to following the terminal.

    from embcc.core import progress
    progress.step("verifying retrieval.query", 2, 5)   # embcc: verifying retrieval.query (2/5)
"""

from __future__ import annotations

import contextlib
import sys

_forced: bool | None = None


def configure(enabled: bool | None) -> None:
    """True: always report; False: never (--quiet); None: report when stderr is a terminal."""
    global _forced
    _forced = enabled


def enabled() -> bool:
    if _forced is not None:
        return _forced
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def step(what: str, i: int | None = None, n: int | None = None) -> None:
    """One line: what is being done, and (1-based) which of how many."""
    if not enabled():
        return
    count = f" ({i}/{n})" if i is not None and n is not None else ""
    with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr never fails the work
        print(f"embcc: {what}{count}", file=sys.stderr, flush=True)
