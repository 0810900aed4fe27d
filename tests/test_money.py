"""Amounts for people: the currency's own symbol, zero-decimal currencies, unknown amounts."""

from __future__ import annotations

import pytest

from campaigns.money import format_money, symbol


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (4.95, "GBP", "£4.95"),
        (1234.5, "eur", "€1,234.50"),
        (12, "CHF", "CHF 12.00"),
        (99, "SEK", "SEK 99.00"),  # no symbol here: the ISO code
        (1500, "JPY", "¥1,500"),  # no minor unit
        (-3.5, "USD", "-$3.50"),
        (None, "GBP", ""),  # a file without prices
        (float("nan"), "GBP", ""),
    ],
)
def test_format_money(amount: float | None, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown


def test_symbol_of_nothing_is_nothing() -> None:
    assert symbol("") == "" and symbol("gbp") == "£"
