"""User-facing errors.

Anything a user can cause (a missing file, a wrong option, a malformed array)
raises `PosejaxError` with a one-line message naming the file or option and the
problem; entry points print that line and exit with status 2, without a traceback.
"""


class PosejaxError(Exception):
  """An error caused by user input (files, options); printed as one line."""
