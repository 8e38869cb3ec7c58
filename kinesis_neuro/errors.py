"""Exceptions raised by kinesis-neuro.

Every error a user can cause (bad file, unknown name, impossible parameter) is a
:class:`KinesisNeuroError`; the command line turns these into a one-line message.
"""


class KinesisNeuroError(Exception):
    """Base class of all user-facing errors of the package."""


class DataFormatError(KinesisNeuroError, ValueError):
    """A file is truncated, corrupt, of an unexpected layout, or holds invalid samples."""


class ChannelNotFoundError(KinesisNeuroError, KeyError):
    """A channel (muscle) was asked for that the data does not hold."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(KinesisNeuroError):
    """A registered dataset is unknown, unavailable offline, or fails its checksum."""


class ChecksumError(DatasetError):
    """A dataset file's SHA-256 does not match the registry."""


class ProcessingError(KinesisNeuroError, ValueError):
    """A processing step cannot be applied with the given parameters (e.g. cut-off above Nyquist)."""


def require_positive(**values) -> None:
    """``ProcessingError`` naming the first of ``values`` (name=number; ``None`` skipped) that is not > 0."""
    for name, value in values.items():
        if value is not None and not float(value) > 0:  # NaN fails too
            raise ProcessingError(f"{name} must be greater than 0, got {value}")
