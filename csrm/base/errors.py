"""One error type for bad input, always naming where the fault is (file, line, field)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a file, line or field that cannot be used.

    The message always reads ``<file>:<line>: field '<field>': <what is wrong>`` with the parts that are
    known, so a user can jump straight to the fault.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = ""
        if path is not None:
            where = str(path) + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(where + message)


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss (or gradient norm) stopped being a finite number (``csrm train``
    exits 3). Here, not beside the Trainer, so the command line can name it without importing torch."""
