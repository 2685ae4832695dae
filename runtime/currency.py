"""Minor units of currencies: the one table that turns amounts people write (major units,
"19.50 EUR", "¥50") into the integers Stripe and our protos carry (minor units: 1950, 50) and
back again for display.

The exponents are Stripe's, which follow ISO 4217 for the currencies that matter here: yen, won,
dong and the other zero-decimal currencies count whole units; the Bahraini, Jordanian, Kuwaiti
and Omani dinars and the Tunisian dinar count thousandths; everything else counts hundredths.
Where Stripe and ISO 4217 differ (ISO counts the Icelandic krona in whole units, Stripe in
hundredths), Stripe's way wins, because Stripe is what charges and refunds.
"""

from __future__ import annotations

from decimal import Decimal

# Currencies Stripe counts in whole units (an amount of 50 JPY is 50).
_ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
# Currencies Stripe counts in thousandths (1.234 KWD is 1234).
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Every other currency counts hundredths (19.50 EUR is 1950).
DEFAULT_EXPONENT = 2


def exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has (0, 2 or 3); case-insensitive."""
    code = currency.lower()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return DEFAULT_EXPONENT


def to_minor(major: Decimal, currency: str) -> int | None:
    """An amount in major units as minor units of the currency; None when the amount has more
    decimals than the currency has (¥50.5, $1.234), which no charge can carry."""
    scaled = major.scaleb(exponent(currency))
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """Minor units of the currency as an exact amount in major units (1950 EUR -> 19.50)."""
    return Decimal(amount_minor).scaleb(-exponent(currency))


def number(amount_minor: int, currency: str, *, grouped: bool, drop_zero_decimals: bool) -> str:
    """The amount's digits in major units with the currency's decimals ("1,234.56", "5,000",
    "1.234"), with a minus sign when negative; ``grouped`` puts commas between thousands,
    ``drop_zero_decimals`` writes a whole amount without its decimals ("49" for 4900 USD)."""
    places = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**places)
    whole_text = f"{whole:,}" if grouped else str(whole)
    if places == 0 or (drop_zero_decimals and fraction == 0):
        return f"{sign}{whole_text}"
    return f"{sign}{whole_text}.{fraction:0{places}d}"
