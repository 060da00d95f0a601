"""Exceptions raised by cliplens.

Every error meant for a user derives from :class:`CliplensError`; its message is
one sentence that says what was wrong and what to do. The CLI prints it on one
line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class CliplensError(Exception):
    """Base class for errors caused by user input or environment, not by bugs."""


class UnknownNameError(CliplensError, KeyError):
    """A backbone, explainer, dataset or metric name is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class PluginError(CliplensError):
    """A plugin failed to load, collided with another plugin, or broke its contract."""


class BackboneError(CliplensError):
    """A backbone could not be built, loaded, or cannot do what was asked."""


class ExplainerError(CliplensError):
    """An explainer was misconfigured or returned invalid output."""


class InputError(CliplensError):
    """Images, texts, masks or other inputs are missing, empty or malformed."""


class SampleError(CliplensError):
    """One dataset sample is unusable (unreadable image, mask mismatch, bad values)."""


class MaskValueError(SampleError):
    """A sample's mask holds values that are neither classes nor the ignore value.

    Attributes:
        values: the offending mask values, sorted (at most a few).
    """

    def __init__(self, message: str, values: list[int]) -> None:
        super().__init__(message)
        self.values = [int(v) for v in values]
