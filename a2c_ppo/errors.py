"""The one exception type for bad user input: its message says what to change."""


class ConfigError(ValueError):
    """Raised for invalid flags, env ids or checkpoints, before any worker starts."""
