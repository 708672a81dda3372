import pytest
from hypothesis import given
from hypothesis import strategies as st

from carebus.codes import (
    dea_check_digit,
    is_valid_cpt,
    is_valid_dea,
    is_valid_hcpcs,
    is_valid_icd10cm,
    is_valid_npi,
    npi_check_digit,
)

DEA_REGISTRANT_TYPES = "ABCDEFGHJKLMPRSTUX"


def digits(count: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=count, max_size=count)


def replace_digit(text: str, position: int, digit: str) -> str:
    return text[:position] + digit + text[position + 1 :]


def test_cms_example_npi_has_check_digit_3() -> None:
    assert npi_check_digit("123456789") == "3"
    assert is_valid_npi("1234567893")


@given(digits(9))
def test_nine_digits_with_computed_npi_check_digit_validate(first_nine: str) -> None:
    assert is_valid_npi(first_nine + npi_check_digit(first_nine))


@given(digits(9), st.integers(0, 9), st.integers(1, 9))
def test_any_single_digit_change_invalidates_an_npi(first_nine: str, position: int, shift: int) -> None:
    npi = first_nine + npi_check_digit(first_nine)
    changed = replace_digit(npi, position, str((int(npi[position]) + shift) % 10))
    assert not is_valid_npi(changed)


@pytest.mark.parametrize(
    "npi",
    ["123456789", "12345678930", "123456789A", "1234567893\n", " 1234567893", "١٢٣٤٥٦٧٨٩٣", ""],
)
def test_npi_must_be_exactly_ten_ascii_digits(npi: str) -> None:
    assert not is_valid_npi(npi)


@pytest.mark.parametrize("first_nine", ["12345678", "1234567890", "12345678X", "١٢٣٤٥٦٧٨٩"])
def test_npi_check_digit_needs_nine_ascii_digits(first_nine: str) -> None:
    with pytest.raises(ValueError, match="nine digits"):
        npi_check_digit(first_nine)


def test_dea_example_has_check_digit_3() -> None:
    assert dea_check_digit("123456") == "3"
    assert is_valid_dea("AB1234563")


@given(st.sampled_from(DEA_REGISTRANT_TYPES), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ9"), digits(6))
def test_dea_with_computed_check_digit_validates(registrant: str, second: str, six: str) -> None:
    assert is_valid_dea(registrant + second + six + dea_check_digit(six))


@given(digits(6), st.integers(0, 6), st.integers(1, 9))
def test_single_digit_change_invalidates_dea_unless_a_doubled_digit_moves_by_five(
    six: str, position: int, shift: int
) -> None:
    # Digits 2, 4 and 6 carry weight 2, so shifting one of them by five changes the sum by ten.
    number = six + dea_check_digit(six)
    changed = replace_digit(number, position, str((int(number[position]) + shift) % 10))
    doubled_position = position in {1, 3, 5}
    assert is_valid_dea("AB" + changed) is (doubled_position and shift == 5)


@pytest.mark.parametrize(
    "dea",
    [
        "IB1234563",  # I is not a registrant type
        "NB1234563",
        "ZB1234563",
        "A11234563",  # second character may be a letter or 9 only
        "ab1234563",  # callers normalise case
        "AB1234564",  # wrong check digit
        "AB123456",
        "AB12345630",
        "AB1234563\n",
    ],
)
def test_malformed_dea_numbers_are_rejected(dea: str) -> None:
    assert not is_valid_dea(dea)


def test_dea_second_character_may_be_9_for_business_registrants() -> None:
    assert is_valid_dea("A91234563")


@pytest.mark.parametrize("six", ["12345", "1234567", "12345X"])
def test_dea_check_digit_needs_six_digits(six: str) -> None:
    with pytest.raises(ValueError, match="six digits"):
        dea_check_digit(six)


@pytest.mark.parametrize("code", ["A00", "E11.9", "S52.521A", "Z79.4", "J45.909", "M1A.0110", "C7A.00"])
def test_well_formed_icd10cm_codes_are_accepted(code: str) -> None:
    assert is_valid_icd10cm(code)


@pytest.mark.parametrize(
    "code",
    ["U07.1", "E11.", "E119", "e11.9", "E11.12345", "11.9", "EE1.9", "E11.9\n", "E1"],
)
def test_malformed_or_reserved_icd10cm_codes_are_rejected(code: str) -> None:
    assert not is_valid_icd10cm(code)


@pytest.mark.parametrize("code", ["99213", "00100", "0001F", "0042T"])
def test_cpt_category_i_ii_and_iii_codes_are_accepted(code: str) -> None:
    assert is_valid_cpt(code)


@pytest.mark.parametrize("code", ["9921", "992134", "0001A", "J3490", "99213\n", "9921٣", "0001f"])
def test_malformed_cpt_codes_are_rejected(code: str) -> None:
    assert not is_valid_cpt(code)


@pytest.mark.parametrize("code", ["A0428", "J3490", "V2020"])
def test_hcpcs_level_ii_codes_are_accepted(code: str) -> None:
    assert is_valid_hcpcs(code)


@pytest.mark.parametrize("code", ["W1234", "J349", "J34900", "3490J", "j3490", "J3490\n"])
def test_malformed_hcpcs_codes_are_rejected(code: str) -> None:
    assert not is_valid_hcpcs(code)
