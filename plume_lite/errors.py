"""Errors a user can act on. The CLI prints them as one line; everything else is a bug."""


class PlumeError(Exception):
    """Base class: a problem with the user's input, config, files or checkpoint."""


class ConfigError(PlumeError, ValueError):
    """Unknown or mistyped configuration key/value."""


class InputError(PlumeError, ValueError):
    """An item passed to encode() is malformed (unknown key, missing field, bad mode)."""


class CheckpointError(PlumeError, FileNotFoundError):
    """A checkpoint folder is missing, incomplete or not a plume_lite checkpoint."""
