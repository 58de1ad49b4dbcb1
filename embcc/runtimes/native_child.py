"""The child side of embcc.runtimes.native: `python -m embcc.runtimes.native_child TASK`, payload on stdin.

Prints one JSON line: {"ok": true, ...} or {"error": "<one-line EmbccError>"}. A native crash kills this process
and nothing else; the parent turns the signal into an error message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
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
