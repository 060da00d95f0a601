"""Exceptions raised by cliplens.

Every error meant for a user derives from :class:`CliplensError`; its message is
one sentence that says what was wrong and what to do. The CLI prints it on one
line and exits with its ``exit_status`` (2 for bad input, 1 for an :class:`OutputError`)
instead of showing a traceback.
"""

from __future__ import annotations


class CliplensError(Exception):
    """Base class for errors caused by user input or environment, not by bugs.

    ``exit_status`` is the CLI's exit status for it: 2 (bad input) unless a subclass says otherwise.
    """

    exit_status: int = 2


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


class OutputError(CliplensError):
    """An output file could not be written because a resource ran out: the disk is full, the quota is
    exceeded or the file system is read-only (:func:`cliplens.writable.write_atomically`). The CLI
    exits with status 1: the input was fine, the run failed."""

    exit_status = 1

    def __init__(self, message: str, *, path: object = None, reason: str = "") -> None:
        super().__init__(message)
        self.path, self.reason = path, reason  # the file, and why it was not written ("the disk is full ...")


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
