"""The one exception type dynconv raises for bad user input; CLIs print it as a single line."""


class DynconvError(Exception):
    """A user-facing error whose message says what is wrong and how to fix it."""
