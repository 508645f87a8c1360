"""The one exception type that means "the user gave us something we cannot use"."""


class InputError(Exception):
    """A bad input: the message says what is wrong and what to do about it.

    The command line prints the message on one line and exits non-zero, with no traceback.
    """
