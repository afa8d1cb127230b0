"""acards.numbers: the one place numbers shown to people are written, byte for byte."""

from __future__ import annotations

import math

import pytest

from acards.numbers import fixed, format_number, interval_text, significant


@pytest.mark.parametrize("value, text", [
    (None, "—"), (True, "yes"), (False, "no"),
    (2, "2"), (2.0, "2"), (1000.0, "1000"), (-0.0, "0"), (0.0, "0"),
    (0.31666666, "0.317"), (-0.31666666, "-0.317"), (6.293e-09, "6.29e-09"), (12345.5, "1.23e+04"),
    (1e15, "1e+15"), (math.nan, "—"), (math.inf, "—"),
])
def test_format_number_on_pages(value, text):
    assert format_number(value) == text


def test_format_number_takes_digits():
    assert format_number(0.123456, 4) == "0.1235" and format_number(0.123456, 2) == "0.12"


def test_format_number_refuses_text():
    with pytest.raises(TypeError):
        format_number("0.5")


@pytest.mark.parametrize("estimate, se, text", [
    (None, 0.1, "—"), (0.25, None, "0.25"), (0.25, 0.05, "0.25 [0.15, 0.35]"), (0.0, 0.5, "0 [-1, 1]"),
])
def test_interval_text(estimate, se, text):
    assert interval_text(estimate, se, 2.0) == text


VALUES = [0.0, -0.0, 1.0, 0.1, 1 / 3, -2 / 3, 12345.678, 1e-7, -1e-7, 0.00049999, 0.99995, 123456789.0, math.nan, math.inf]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("digits", [2, 3, 4])
def test_significant_is_the_g_format_the_messages_have_always_used(value, digits):
    assert significant(value, digits) == f"{value:.{digits}g}"


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("places", [2, 3, 4])
def test_fixed_is_the_f_format_the_reasons_have_always_used(value, places):
    assert fixed(value, places) == f"{value:.{places}f}"
