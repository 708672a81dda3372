"""What a name or a free-text field may hold: printable text, never control or format characters.

Control characters (NUL and the like), format characters (bidi overrides, zero-width spaces, the byte-order
mark), line and paragraph separators, the replacement character (what is left of bytes that were not
UTF-8), noncharacters and unpaired surrogates are refused, and a value must start and end with something
visible, so that a blank or zero-width-only value is refused too. Zero-width joiner and non-joiner stay
allowed inside a value: Persian and Indic names and emoji sequences need them. Free text (a rejection
reason) may also hold line breaks and tabs inside.

The same ranges give the JSON Schema pattern that the published description and the gateway's models
carry. That pattern names Basic Multilingual Plane characters only (beyond it, regex dialects disagree on
how to name a character): the few format characters and the noncharacters above it, and unpaired
surrogates, are refused by the function alone.
"""

import re
from collections.abc import Iterable
from typing import Final

from pydantic_core import PydanticCustomError

type CodePoints = tuple[tuple[int, int], ...]  # inclusive ranges

# Unicode 15.1 (Python 3.13) categories Cc, Cf (but the joiners), Cs, Zl and Zp, the replacement character
# and the 66 noncharacters; a unit test recomputes them from unicodedata. Written out, so that no cold start
# spends time walking Unicode.
REFUSED: Final[CodePoints] = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200B), (0x200E, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
    (0xD800, 0xDFFF), (0xFDD0, 0xFDEF), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0xFFFD, 0xFFFF),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0x1FFFE, 0x1FFFF), (0x2FFFE, 0x2FFFF), (0x3FFFE, 0x3FFFF), (0x4FFFE, 0x4FFFF), (0x5FFFE, 0x5FFFF),
    (0x6FFFE, 0x6FFFF), (0x7FFFE, 0x7FFFF), (0x8FFFE, 0x8FFFF), (0x9FFFE, 0x9FFFF), (0xAFFFE, 0xAFFFF),
    (0xBFFFE, 0xBFFFF), (0xCFFFE, 0xCFFFF), (0xDFFFE, 0xDFFFF), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
    (0xEFFFE, 0xEFFFF), (0xFFFFE, 0xFFFFF), (0x10FFFE, 0x10FFFF),
)  # fmt: skip
# What str.isspace() calls space; neither it nor a joiner may start or end a value.
SPACE: Final[CodePoints] = (
    (0x0009, 0x000D), (0x001C, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0), (0x1680, 0x1680),
    (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
)  # fmt: skip
JOINERS: Final[CodePoints] = ((0x200C, 0x200D),)
LINE_BREAKS_AND_TABS: Final[CodePoints] = ((0x0009, 0x000A), (0x000D, 0x000D))

TEXT_RULE: Final = "Must start and end with a visible character and hold no control or format characters"
FREE_TEXT_RULE: Final = TEXT_RULE + " (line breaks and tabs are allowed inside)"


def _without(ranges: CodePoints, removed: CodePoints) -> CodePoints:
    kept: list[tuple[int, int]] = []
    for first, last in _merged(ranges):
        for cut_first, cut_last in _merged(removed):
            if cut_last < first or cut_first > last:
                continue
            if cut_first > first:
                kept.append((first, cut_first - 1))
            first = cut_last + 1
            if first > last:
                break
        if first <= last:
            kept.append((first, last))
    return tuple(kept)


def _merged(ranges: Iterable[tuple[int, int]]) -> CodePoints:
    """The same code points as ranges in order, overlapping and adjacent ones joined (interval
    arithmetic: enumerating the points costs milliseconds of every cold start)."""
    found: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if found and first <= found[-1][1] + 1:
            found[-1] = (found[-1][0], max(found[-1][1], last))
        else:
            found.append((first, last))
    return tuple(found)


def _union(*ranges: CodePoints) -> CodePoints:
    return _merged(pair for group in ranges for pair in group)


def _escape(code_point: int) -> str:
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else f"\\U{code_point:08x}"


def _negated_class(ranges: CodePoints, portable: bool) -> str:
    parts = []
    for first, last in ranges:
        if portable and (first > 0xFFFF or 0xD800 <= first <= 0xDFFF):
            continue  # see the module's docstring
        parts.append(_escape(first) if first == last else f"{_escape(first)}-{_escape(last)}")
    return "[^" + "".join(parts) + "]"


def _pattern(refused: CodePoints, portable: bool) -> str:
    inner = _negated_class(refused, portable)
    edge = _negated_class(_union(refused, SPACE, JOINERS), portable)
    return f"^{edge}(?:{inner}*{edge})?$"


_FREE_TEXT_REFUSED: Final = _without(REFUSED, LINE_BREAKS_AND_TABS)
# The portable patterns, for JSON Schema (ECMA-262 and Java read \\uXXXX the same way).
TEXT_PATTERN: Final = _pattern(REFUSED, portable=True)
FREE_TEXT_PATTERN: Final = _pattern(_FREE_TEXT_REFUSED, portable=True)
# The function's own, complete ones.
_TEXT: Final = re.compile(_pattern(REFUSED, portable=False).removesuffix("$") + r"\Z")
_FREE_TEXT: Final = re.compile(_pattern(_FREE_TEXT_REFUSED, portable=False).removesuffix("$") + r"\Z")


def printable_text(value: str) -> str:
    """A name or a line of text, as it was sent; PydanticCustomError if it holds what it must not."""
    if not _TEXT.match(value):
        raise PydanticCustomError("text_characters", TEXT_RULE)
    return value


def printable_free_text(value: str) -> str:
    """Free text, which may also hold line breaks and tabs inside."""
    if not _FREE_TEXT.match(value):
        raise PydanticCustomError("text_characters", FREE_TEXT_RULE)
    return value
