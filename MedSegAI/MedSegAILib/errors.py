"""Errors that reach the user.

Every failure a user can cause (bad file, wrong model, not enough memory) is raised as a
:class:`MedSegAIError` carrying a plain-language ``message`` and a ``hint`` saying what to do.
The CLI and the Slicer module print these two lines instead of a traceback.
"""

from __future__ import annotations


class MedSegAIError(Exception):
    """Base class of all user-facing errors.

    Args:
        message: what is wrong, naming the file, model or value concerned.
        hint: what the user can do about it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class InputImageError(MedSegAIError):
    """An input image is missing, unreadable or unsuitable for the model."""


class BundleError(MedSegAIError):
    """A model bundle is malformed, unknown or fails its schema."""


class BundleIntegrityError(BundleError):
    """A bundle file does not match its recorded SHA-256 (corrupted or tampered)."""


class ApplicabilityError(MedSegAIError):
    """The input is outside what the model card declares it can handle, and the card says refuse."""


class ResourceError(MedSegAIError):
    """The job needs more memory (or another device) than is available."""


class EmptyResultError(MedSegAIError):
    """The model found none of its structures in the input."""

    exit_code = 3


class Cancelled(MedSegAIError):
    """The user cancelled the job."""

    exit_code = 130

    def __init__(self, message: str = "cancelled by the user", hint: str = "") -> None:
        super().__init__(message, hint)
