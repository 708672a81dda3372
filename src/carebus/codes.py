"""Validators for the code systems carebus accepts: NPI, DEA, ICD-10-CM, CPT and HCPCS Level II."""

import re
from typing import Final

# The shapes of the codes, as regular expressions both Python and JSON Schema read alike: [0-9] rather
# than \d, which also matches non-ASCII digits. Matched whole (fullmatch here, ^...$ in schemas).
NPI_SHAPE: Final = "[0-9]{10}"
DEA_SHAPE: Final = "[ABCDEFGHJKLMPRSTUX][A-Z9][0-9]{7}"
ICD10CM_SHAPE: Final = r"[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?"
CPT_SHAPE: Final = "[0-9]{4}[0-9FT]"
HCPCS_SHAPE: Final = "[A-V][0-9]{4}"

_NINE_DIGITS: Final = re.compile(r"[0-9]{9}")
_SIX_DIGITS: Final = re.compile(r"[0-9]{6}")
_NPI: Final = re.compile(NPI_SHAPE)
_DEA: Final = re.compile(DEA_SHAPE)
_ICD10CM: Final = re.compile(ICD10CM_SHAPE)
_CPT: Final = re.compile(CPT_SHAPE)
_HCPCS: Final = re.compile(HCPCS_SHAPE)

# CMS computes the NPI check digit as if the number were prefixed by the card issuer identifier 80840.
_NPI_ISSUER_PREFIX: Final = "80840"


def _luhn_check_digit(payload: str) -> str:
    total = 0
    # Counting from the right, the check digit will sit at position 0, so payload digits at even
    # offsets from the right end up in the doubled positions.
    for offset, char in enumerate(reversed(payload)):
        digit = int(char)
        if offset % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str(-total % 10)


def npi_check_digit(first_nine: str) -> str:
    """The NPI check digit for the first nine digits of a National Provider Identifier."""
    if not _NINE_DIGITS.fullmatch(first_nine):
        raise ValueError("an NPI check digit needs exactly nine digits")
    return _luhn_check_digit(_NPI_ISSUER_PREFIX + first_nine)


def is_valid_npi(npi: str) -> bool:
    """Whether npi is ten digits whose last digit is the Luhn check digit of the CMS standard."""
    return bool(_NPI.fullmatch(npi)) and npi[9] == npi_check_digit(npi[:9])


def dea_check_digit(digits6: str) -> str:
    """The DEA check digit: last digit of (d1 + d3 + d5) + 2 * (d2 + d4 + d6)."""
    if not _SIX_DIGITS.fullmatch(digits6):
        raise ValueError("a DEA check digit needs exactly six digits")
    digits = [int(char) for char in digits6]
    return str((sum(digits[0::2]) + 2 * sum(digits[1::2])) % 10)


def is_valid_dea(dea: str) -> bool:
    """Whether dea is a registrant type, a second letter (or 9), six digits and the check digit."""
    return bool(_DEA.fullmatch(dea)) and dea[8] == dea_check_digit(dea[2:8])


def is_valid_icd10cm(code: str) -> bool:
    """Whether code has the shape of an ICD-10-CM diagnosis code (U codes are reserved by WHO)."""
    return bool(_ICD10CM.fullmatch(code))


def is_valid_cpt(code: str) -> bool:
    """Whether code is a CPT code: Category I (five digits), II (nnnnF) or III (nnnnT)."""
    return bool(_CPT.fullmatch(code))


def is_valid_hcpcs(code: str) -> bool:
    """Whether code is a HCPCS Level II code: a letter A-V and four digits."""
    return bool(_HCPCS.fullmatch(code))
