"""Errors for bad user input.

Every message is one line that names the file, column, field or flag at fault, so the CLI can print it
as is and exit with status 2.
"""


class HarmonyInputError(ValueError):
    """Bad user input (a file, a column, a flag). The message is one line and names the culprit."""
