"""Argument checks shared by the transform and configuration constructors (fail early, say why)."""

from __future__ import annotations

from typing import Sequence


def check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_range(name: str, value: Sequence[float], minimum: float | None = None, positive: bool = False) -> None:
    """``value`` is a ``(low, high)`` pair with ``low <= high`` (and ``low >= minimum`` / ``low > 0``)."""
    if len(value) != 2 or not value[0] <= value[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {tuple(value)}")
    if minimum is not None and value[0] < minimum:
        raise ValueError(f"{name} must not go below {minimum}, got {tuple(value)}")
    if positive and not value[0] > 0:
        raise ValueError(f"{name} must be positive, got {tuple(value)}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_control_points(name: str, value: int) -> None:
    # a cubic B-spline field needs at least two control points per axis to vary at all
    if int(value) != value or value < 2:
        raise ValueError(f"{name} must be an integer >= 2, got {value}")
