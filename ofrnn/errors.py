"""User-facing errors.

An :class:`OfrnnError` is a user's mistake or bad input: the CLI prints its message as one line
(``ofrnn: error: <file>: <field>: <what>``) and exits with status 2, never with a traceback.
Anything else escaping the CLI is a bug in ofrnn and keeps its traceback.
"""


class OfrnnError(Exception):
    """Bad input or a user's mistake; the message names the file and the field at fault."""

    def __init__(self, message, *, path=None, field=None):
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        parts = [p for p in (self.path, field, message) if p]
        super().__init__(": ".join(parts))
