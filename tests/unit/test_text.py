"""Printable text: the written-out code point table is what Unicode says, and the portable pattern the
description publishes agrees with the function's own check on every Basic Multilingual Plane string."""

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from carebus.text import (
    FREE_TEXT_PATTERN,
    JOINERS,
    LINE_BREAKS_AND_TABS,
    REFUSED,
    SPACE,
    TEXT_PATTERN,
    printable_free_text,
    printable_text,
)

ALL_CODE_POINTS = range(0x110000)


def code_points(ranges: tuple[tuple[int, int], ...]) -> set[int]:
    return {point for first, last in ranges for point in range(first, last + 1)}


def is_noncharacter(point: int) -> bool:
    return 0xFDD0 <= point <= 0xFDEF or point & 0xFFFE == 0xFFFE


def test_the_refused_table_is_what_unicode_calls_control_format_surrogate_separator_or_noncharacter():
    expected = {
        point
        for point in ALL_CODE_POINTS
        if unicodedata.category(chr(point)) in ("Cc", "Cs", "Zl", "Zp")
        or (unicodedata.category(chr(point)) == "Cf" and point not in code_points(JOINERS))
        or is_noncharacter(point)
        or point == 0xFFFD
    }
    assert code_points(REFUSED) == expected


def test_space_is_what_python_calls_space():
    assert code_points(SPACE) == {point for point in ALL_CODE_POINTS if chr(point).isspace()}


def test_the_joiners_and_line_breaks_are_the_ones_named():
    assert code_points(JOINERS) == {0x200C, 0x200D}
    assert code_points(LINE_BREAKS_AND_TABS) == {0x09, 0x0A, 0x0D}


def accepts(check, value: str) -> bool:
    try:
        check(value)
    except PydanticCustomError:
        return False
    return True


BMP_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(["a", " ", "\t", "\n", "\u200b", "\u200c", "\u202e", "\u00ad", "\ufeff", "\ufdd0"]),
        st.characters(min_codepoint=0, max_codepoint=0xFFFF, exclude_categories=("Cs",)),
    ),
    max_size=8,
)


@given(BMP_TEXT)
def test_the_published_text_pattern_agrees_with_the_function_on_the_bmp(value: str):
    assert bool(re.fullmatch(TEXT_PATTERN, value)) == accepts(printable_text, value)


@given(BMP_TEXT)
def test_the_published_free_text_pattern_agrees_with_the_function_on_the_bmp(value: str):
    assert bool(re.fullmatch(FREE_TEXT_PATTERN, value)) == accepts(printable_free_text, value)


@pytest.mark.parametrize(
    "value", ["x\U000e0001", "x\U0001fffe", "x\ud800y"], ids=["tag", "nonchar", "surrogate"]
)
def test_beyond_the_bmp_the_function_refuses_what_the_pattern_cannot_name(value: str):
    assert re.fullmatch(TEXT_PATTERN, value)
    assert not accepts(printable_text, value)


@pytest.mark.parametrize(
    ("value", "text", "free_text"),
    [
        ("Zelda", True, True),
        ("", False, False),
        (" Zelda", False, False),
        ("Zelda\t", False, False),
        ("Ze\tlda", False, True),
        ("Ze\r\nlda", False, True),
        ("\u200c", False, False),
        ("a\u200db", True, True),
        ("a\u2028b", False, False),
        ("a\ufffdb", False, False),
    ],
)
def test_text_and_free_text(value: str, text: bool, free_text: bool):
    assert (accepts(printable_text, value), accepts(printable_free_text, value)) == (text, free_text)
