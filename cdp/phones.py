"""Phone numbers in one form, so that "+7 999 000-00-01" and "8 (999) 000-00-01" match."""

import phonenumbers


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
