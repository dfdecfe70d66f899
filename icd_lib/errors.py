"""The one base class of failures a user can fix.

A :class:`UserError`'s message says what was wrong and what to do; the command line prints it
as one line and exits with its ``exit_code`` (README, "Errors and exit codes"). Anything else
that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_FAILURE = 2  # an expected failure: bad input, a missing or foreign file, no GPU, no space
EXIT_BUSY = 3  # the run is being trained by another process


class UserError(Exception):
    """A failure with a message written for the user; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_FAILURE


class InputError(UserError, ValueError):
    """A value the user gave (a name, a number, a file's contents) that cannot be used."""


class MissingRecordsError(UserError, RuntimeError):
    """A chapter needs records that are neither here nor fetchable, or that the plan runner has
    not made yet; the message names the one command that makes them and what it costs."""
