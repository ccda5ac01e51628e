"""Control characters in text that comes from outside whaled: leaderboard names, labels, market titles.

Such text ends up in one-line places (an email Subject, a log line, a table row), where a line break would
start a new header or a forged line. The email package rejects CR and LF in header values outright.
"""

from __future__ import annotations

import re

__all__ = ["find_control_character", "replace_control_characters"]

# The C0 and C1 controls (Unicode category Cc, which includes CR, LF, tab and NEL) and the Unicode line and
# paragraph separators. str.splitlines(), and so the email package, treats several of them as line breaks.
_CONTROL_CHARACTERS = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_RUN = re.compile(f"[{_CONTROL_CHARACTERS}]+")


def replace_control_characters(text: str) -> str:
    """Replace each run of control characters in ``text`` with one space, so that it stays on one line."""
    return _CONTROL_RUN.sub(" ", text)


def find_control_character(text: str) -> str | None:
    """Return the first control character in ``text``, or None if it has none."""
    match = _CONTROL_RUN.search(text)
    return None if match is None else match.group()[0]
