"""The one error type steerlab raises for bad input."""


class SteerlabError(ValueError):
    """Bad input to steerlab. The message says what is wrong, what is valid, and the way out."""
