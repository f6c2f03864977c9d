"""Typed errors. Library code raises these; the CLI turns them into one line and exit code 1."""


class SifirError(Exception):
    """Base class: a problem the user can act on (the message says what and where)."""


class DataError(SifirError):
    """A dataset file is missing, corrupt, or does not match its checksum."""


class IDXError(DataError):
    """An IDX file is malformed (bad magic, dtype, dimensions or size)."""


class DownloadError(DataError):
    """MNIST could not be fetched from any source."""


class ModelFileError(SifirError):
    """A model or checkpoint file is not ours, is damaged, or does not fit the architecture."""


class ImageError(SifirError):
    """A picture could not be read or holds no digit."""


class TooManyDigits(ImageError):
    """A picture holds more digit-like marks than a number has (a page of text, a texture)."""


class TrainingDiverged(SifirError):
    """Training diverged: the loss became NaN or infinite, rose far above where it started, or
    a number overflowed. ``details`` says where and why (epoch, batch, batches, reason, loss,
    start, lr), for a front end that tells it in its own words."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


class ExportError(SifirError):
    """A model cannot be written in another format (a layer with no ONNX operator, a missing package)."""
