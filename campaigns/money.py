"""Amounts for people: ``£4.95``, ``€1,234.50``, ``CHF 12.00`` — one formatter for reports, dashboard and emails.

The symbol comes from the amount's own currency (an order's, a product's), never from a setting, so a
shop that sells in several currencies shows each amount in its own. Currencies without a symbol here
are written with their ISO code (``SEK 99.00``). Two decimals everywhere except the zero-decimal
currencies (JPY, KRW, ...), as ISO 4217 defines them.
"""

from __future__ import annotations

#: ISO 4217 code -> what is written before the amount
SYMBOLS = {
    "GBP": "£", "EUR": "€", "USD": "$", "JPY": "¥", "CNY": "CN¥", "INR": "₹", "KRW": "₩", "BRL": "R$",
    "AUD": "A$", "CAD": "CA$", "NZD": "NZ$", "HKD": "HK$", "SGD": "S$", "MXN": "MX$", "ILS": "₪",
    "CHF": "CHF ", "PLN": "PLN ", "TRY": "₺", "ZAR": "R ",
}  # fmt: skip
#: currencies whose minor unit is 0 (ISO 4217)
ZERO_DECIMALS = frozenset({"JPY", "KRW", "ISK", "CLP", "VND", "UGX", "XAF", "XOF", "PYG", "HUF"})


def symbol(currency: str) -> str:
    """``"£"`` for GBP; the code and a space for a currency without a symbol here (``"SEK "``)."""
    code = (currency or "").strip().upper()
    return SYMBOLS.get(code, f"{code} " if code else "")


def format_money(amount: float | None, currency: str) -> str:
    """``format_money(4.95, "GBP") == "£4.95"``; ``""`` when the amount is unknown (a file without prices)."""
    if amount is None or amount != amount:
        return ""
    code = (currency or "").strip().upper()
    digits = 0 if code in ZERO_DECIMALS else 2
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol(code)}{abs(amount):,.{digits}f}"
