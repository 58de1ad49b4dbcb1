"""embcc: compile Jina embedding checkpoints into deployable artifacts, with proof of parity."""

__version__ = "0.1.0"
