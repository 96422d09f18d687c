"""The one type of user mistake.

Everything a user can cause and fix (a wrong option, a missing or damaged file, a folder that
cannot be written) is raised as a ``GlowflowError`` or one of its subclasses, with a
one-line message that names the problem and the fix. The command line turns exactly these into
that line and exit code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class GlowflowError(Exception):
    """A mistake the user can fix; the message names the problem and the fix."""


class ConfigError(GlowflowError, ValueError):
    """An option or config value that is not allowed."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if it has none), cut to
    ``limit`` characters: what a one-line error can quote of an error from elsewhere."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
