"""The errors a user can cause, each turned into one line naming the key or file (exit 2), and
the stop a signal asks for (Interrupted: exit 143, state saved)."""


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


class DataError(ValueError):
    """A data file is missing, corrupt or not what the config says; the message names it."""


class DownloadError(RuntimeError):
    """A download failed or its md5 did not match; the message names the file and the URL."""


class Interrupted(RuntimeError):
    """A job stopped on request (SIGTERM) after saving its state."""
