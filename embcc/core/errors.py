"""The one error type users see: a single line that names the problem and the fix (CLI exit code 2)."""


class EmbccError(Exception):
    """A problem with the user's input or options. The message is one line: what is wrong, and the fix."""

    def __init__(self, problem: str, fix: str | None = None):
        message = problem if fix is None else f"{problem}; {fix}"
        super().__init__(" ".join(message.split()))
