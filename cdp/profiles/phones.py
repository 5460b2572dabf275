"""Phone numbers in one form, so that "+7 999 000-00-01" and "8 (999) 000-00-01" match."""

from typing import Final

import phonenumbers

from cdp.privacy import personal

# Bits of a number's digest (see personal.digest): one chat in 65 536 shares a number's.
DIGEST_BITS: Final = 16


def normalize(raw: str | None, region: str) -> str | None:
    """E.164 form of a phone number, or None if `raw` is not one."""
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def digest(e164: str | None) -> int | None:
    """What a chat of this number (E.164) is looked up by: its number is sealed."""
    return None if e164 is None else personal.digest(b"phone", e164, DIGEST_BITS)
