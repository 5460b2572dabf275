import pytest

from cdp.profiles.phones import normalize


@pytest.mark.parametrize(
    "raw", ["+7 999 000-00-01", "79990000001", "8 (999) 000-00-01", "+79990000001"]
)
def test_the_common_notations_of_a_russian_number_are_one_number(raw: str) -> None:
    assert normalize(raw, "RU") == "+79990000001"


def test_a_number_with_its_own_country_code_keeps_it() -> None:
    assert normalize("+1 650 253 0000", "RU") == "+16502530000"


@pytest.mark.parametrize("raw", [None, "", "12", "not a phone"])
def test_what_is_not_a_phone_number_normalizes_to_none(raw: str | None) -> None:
    assert normalize(raw, "RU") is None
