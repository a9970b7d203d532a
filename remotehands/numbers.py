"""Reading numbers that arrive as text from outside (ticket ids, header values, query parameters).

``str.isdigit`` is not a guard for ``int``: it accepts superscripts and circled digits that ``int`` refuses
(a 500 instead of a clear 4xx), and other scripts' digits that ``int`` silently converts; and an unbounded
number overflows SQLite's INTEGER or the platform's time_t. This accepts only ASCII digits, bounded.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]+")


def ascii_int(text: str | int | None, *, max_digits: int = 18, signed: bool = False) -> int | None:
    """``text`` as an int when it is 1..``max_digits`` ASCII digits (with an optional ``-`` when
    ``signed``), else None."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        return None
    body = text.strip()
    negative = signed and body.startswith("-")
    if negative:
        body = body[1:]
    if not body or len(body) > max_digits or not _DIGITS.fullmatch(body):
        return None
    return -int(body) if negative else int(body)
