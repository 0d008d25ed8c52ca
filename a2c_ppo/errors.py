"""Exception types that carry a message meant for the user."""


class ConfigError(ValueError):
    """Raised for invalid flags, env ids, folders or checkpoints, before any worker starts.

    The message says what to change; ``main.py`` and ``enjoy.py`` print it as one paragraph
    and exit with status 2.
    """


class NonFiniteError(RuntimeError):
    """A NaN or infinity appeared in training data or in the model.

    The message names the quantity (observation, reward, loss, gradient norm, parameter), and
    where known the env index and the update, so that the user can find the source.
    """
