"""Public alias: `from embcc.errors import EmbccError` (the type lives in embcc.core.errors)."""

from embcc.core.errors import EmbccError

__all__ = ["EmbccError"]
