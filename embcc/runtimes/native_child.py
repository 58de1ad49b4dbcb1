"""The child side of embcc.runtimes.native: `python -m embcc.runtimes.native_child TASK`, payload on stdin.

Prints one JSON line: {"ok": true, ...} or {"error": "<one-line EmbccError>"}. A native crash kills this process
and nothing else; the parent turns the signal into an error message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _tie_to_parent() -> None:
    """Ctrl-C reaches the whole process group: the parent handles it (it kills this child and cleans up), so
    the child ignores SIGINT rather than dying with a traceback the parent would misreport as a crash. And a
    parent killed outright (SIGKILL) takes this child with it (Linux PR_SET_PDEATHSIG), so no orphan keeps
    writing into a staging directory the next run removes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes
        import os

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            return
        if os.getppid() == 1:  # the parent died before the prctl took effect
            sys.exit(1)


def main() -> int:
    _tie_to_parent()
    task = sys.argv[1]
    payload = json.loads(sys.stdin.read())
    from embcc.core.errors import EmbccError

    try:
        if task == "gguf-load-check":
            from embcc.runtimes.llamacpp import run_load_check

            run_load_check(Path(payload["model"]), [Path(a) for a in payload["adapters"]])
        elif task == "gguf-quantize":
            from embcc.runtimes.llamacpp import run_quantize

            run_quantize(Path(payload["src"]), Path(payload["dst"]), payload["type"], int(payload["threads"]))
        else:
            raise EmbccError(f"unknown child task {task!r}", "this is a bug in embcc")
    except EmbccError as e:
        print(json.dumps({"error": str(e)}), flush=True)
        return 0
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
