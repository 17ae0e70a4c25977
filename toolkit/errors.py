"""One exception type for every problem the user can fix; the CLI turns it into a one-line error."""


class ToolkitError(Exception):
    """A problem with the user's input: the message names the file and what to do."""
