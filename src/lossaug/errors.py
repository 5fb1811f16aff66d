"""Exceptions that mean "the user gave a bad value, file or option".

Only these (and ``OSError`` from the file system) are reported by the CLI as one line; any other exception is a
bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input: a value, file or option the user gave; the CLI prints one line and exits 2.

    Subclasses ``ValueError`` so library callers catching ``ValueError`` keep working.
    """
