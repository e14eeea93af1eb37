"""The one error type for model files that cannot be loaded; imports nothing else from Flowmill."""

from __future__ import annotations


class ModelFileError(ValueError):
    """A model file or folder is unreadable, of the wrong kind, incomplete, or does not fit its model.

    A ValueError so the executor reports it like any bad node input; the message always names
    the file it is about.
    """
