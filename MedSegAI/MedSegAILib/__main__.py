"""``python -m MedSegAILib``: the CLI, runnable with any Python that has the core (e.g. Slicer's)."""

from .cli import entry_point

entry_point()
