"""The one exception type users see: a one-line message that says what to do."""


class PolySpaceError(Exception):
    """A user-facing error. Its message is one line naming the file, parameter or model
    at fault and what to do about it. The CLI prints it as `error: <message>` and exits 2."""

    def __init__(self, message: str):
        if "\n" in message:
            message = " ".join(part.strip() for part in message.splitlines() if part.strip())
        super().__init__(message)
