"""The exception types for problems the user can fix; the CLI turns each into a one-line error."""


class ToolkitError(Exception):
    """A problem with the user's input: the message names the file and what to do."""


class OutputError(ToolkitError):
    """A file a stage writes could not be written (full disk, lost permission): it stops the stage at once and is
    never counted as a bad input clip, so no later output is made from what survived."""
