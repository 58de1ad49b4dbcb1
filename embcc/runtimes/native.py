"""Native code that a malformed file can crash runs in a child process, so a crash cannot take embcc down.

`run_child(task, payload, what=...)` starts `python -m embcc.runtimes.native_child TASK` with `payload` as JSON
on stdin and returns the JSON the child prints. A child killed by a signal (SIGSEGV, SIGILL, SIGABRT ...)
becomes one EmbccError naming the signal and what was being done; an error the child reports itself becomes
the same EmbccError it would have raised in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from embcc.core.errors import EmbccError

# The command that runs a child task; tests point it at a deliberately crashing program.
CHILD = [sys.executable, "-m", "embcc.runtimes.native_child"]
CRASH_FIX = ("if this host's CPU reports AMX, reinstall llama-cpp-python portably with scripts/install "
             "(README: llama.cpp build); otherwise re-export the artifact")


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_child(task: str, payload: dict, *, what: str, timeout: float | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(payload.get("threads") or 1))
    try:
        proc = subprocess.run([*CHILD, task], input=json.dumps(payload), capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as e:
        raise EmbccError(f"llama.cpp did not finish {what} within {timeout:.0f} s", "re-export the artifact") from e
    if proc.returncode < 0:
        sig = -proc.returncode
        raise EmbccError(f"llama.cpp crashed ({signal_name(sig)}, signal {sig}) {what}", CRASH_FIX)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if result is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EmbccError(f"llama.cpp's child process failed {what} (exit {proc.returncode}: {tail})", CRASH_FIX)
    if "error" in result:
        raise EmbccError(result["error"])
    return result
