"""What the published description says (its formats, its declared links, the rules only the function
applies) and what a request broke, computed here apart from carebus's own code, as the fuzzer's oracle."""

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st

from carebus.models import FUNCTION_ONLY_RULES

FUNCTION_ONLY_EXTENSION = "x-function-only-rules"

# One seed for every run: the same description and code generate the same requests.
SEED = 20_260_509
_DIGITS = "0123456789"
_DEA_REGISTRANTS = "ABCDEFGHJKLMPRSTUX"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# ----- the description's formats ----------------------------------------------------------------------------
def npi_check_digit(first_nine: str) -> str:
    """Luhn over "80840" + the first nine digits (CMS), written apart from carebus.codes as an oracle."""
    total = 0
    for position, char in enumerate(reversed("80840" + first_nine)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return str((10 - total % 10) % 10)


def dea_check_digit(six: str) -> str:
    """(d1 + d3 + d5) + 2 * (d2 + d4 + d6); its last digit."""
    digits = [int(char) for char in six]
    return str((digits[0] + digits[2] + digits[4] + 2 * (digits[1] + digits[3] + digits[5])) % 10)


def is_valid_npi(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 10
        and all(c in _DIGITS for c in value)
        and value[9] == npi_check_digit(value[:9])
    )


def is_valid_dea(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 9
        and value[0] in _DEA_REGISTRANTS
        and value[1] in _UPPER + "9"
        and all(c in _DIGITS for c in value[2:])
        and value[8] == dea_check_digit(value[2:8])
    )


def npis() -> st.SearchStrategy[str]:
    return st.text(_DIGITS, min_size=9, max_size=9).map(lambda nine: nine + npi_check_digit(nine))


def dea_numbers() -> st.SearchStrategy[str]:
    return st.builds(
        lambda first, second, six: first + second + six + dea_check_digit(six),
        st.sampled_from(_DEA_REGISTRANTS),
        st.sampled_from(_UPPER + "9"),
        st.text(_DIGITS, min_size=6, max_size=6),
    )


def iso_dates(today: date) -> st.SearchStrategy[str]:
    """Any calendar date (RFC 3339 full-date), most of them within a lifetime before today and a few
    days after it, so that many encounters pass the date rules and reach the flow."""
    near = st.dates(min_value=today - timedelta(days=365 * 100), max_value=today + timedelta(days=3))
    recent = st.dates(min_value=today - timedelta(days=60), max_value=today + timedelta(days=1))
    return st.one_of(recent, near, st.dates()).map(date.isoformat)


def register_formats(today: date) -> None:
    """The description's formats, for every schema Schemathesis loads in this process."""
    schemathesis.openapi.format("npi", npis())
    schemathesis.openapi.format("dea-registration-number", dea_numbers())
    schemathesis.openapi.format("date", iso_dates(today))


# ----- what the description declares ------------------------------------------------------------------------
def function_only_rules(description: Mapping[str, Any]) -> dict[str, str]:
    """The rules the description says the function alone applies (its x-function-only-rules), by error
    code; the domain's FUNCTION_ONLY_RULES for a description that lists none."""
    declared = description.get(FUNCTION_ONLY_EXTENSION)
    return dict(declared) if isinstance(declared, dict) else dict(FUNCTION_ONLY_RULES)


def declared_links(description: Mapping[str, Any]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """(source operation, status, target operation, parameters) for every link the description declares."""
    labels: dict[str, str] = {}
    for path, item in description.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                labels[operation["operationId"]] = f"{method.upper()} {path}"
    found = set()
    for path, item in description.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            for status, response in responses.items():
                for link in (response.get("links") or {}).values() if isinstance(response, dict) else ():
                    target = labels.get(link.get("operationId", ""), link.get("operationRef", "?"))
                    parameters = tuple(sorted(link.get("parameters", {})))
                    found.add((f"{method.upper()} {path}", str(status), target, parameters))
    return found


# ----- what a request broke: the function-only rules, checked apart from the function -----------------------
def _date(value: object) -> date | None:
    """The calendar date a YYYY-MM-DD string names; None for anything else."""
    if not isinstance(value, str) or not _FULL_DATE.fullmatch(value):
        return None
    try:
        return date(int(value[:4]), int(value[5:7]), int(value[8:]))
    except ValueError:
        return None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _function_only_text(text: str) -> bool:
    """What the text rule leaves to the function: format characters beyond the Basic Multilingual Plane,
    noncharacters beyond it, and unpaired surrogates (the description's pattern names BMP characters only)."""
    return any(
        unicodedata.category(char) == "Cs"
        or (ord(char) > 0xFFFF and (unicodedata.category(char) == "Cf" or ord(char) & 0xFFFE == 0xFFFE))
        for char in text
    )


def _date_fields(body: Mapping[str, Any]) -> tuple[object, object, object, object]:
    """encounterDate, patient.birthDate, followUp.earliest and followUp.latest, as sent."""
    patient = body.get("patient") if isinstance(body.get("patient"), dict) else {}
    follow_up = body.get("followUp") if isinstance(body.get("followUp"), dict) else {}
    return (
        body.get("encounterDate"),
        patient.get("birthDate"),
        follow_up.get("earliest"),
        follow_up.get("latest"),
    )


def broke(rule: str, body: Any) -> bool | None:
    """Whether the body breaks the function-only rule; None for a rule this oracle does not know."""
    if not isinstance(body, dict):
        return False
    sent = _date_fields(body)
    encounter, birth, earliest, latest = (_date(value) for value in sent)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    oracles: dict[str, Callable[[], bool]] = {
        "invalid_npi": lambda: "practitionerNpi" in body and not is_valid_npi(body["practitionerNpi"]),
        "invalid_dea": lambda: (
            body.get("prescriberDea") is not None and not is_valid_dea(body["prescriberDea"])
        ),
        "date_in_future": lambda: any(day is not None and day > tomorrow for day in (encounter, birth)),
        "birth_date_too_early": lambda: birth is not None and birth < date(1900, 1, 1),
        "birth_date_after_encounter": lambda: None not in (birth, encounter) and birth > encounter,
        "follow_up_before_encounter": lambda: None not in (earliest, encounter) and earliest < encounter,
        "follow_up_window_reversed": lambda: None not in (earliest, latest) and latest < earliest,
        "follow_up_window_too_long": lambda: (
            None not in (earliest, latest) and (latest - earliest) > timedelta(days=90)
        ),
        "date_parsing": lambda: any(isinstance(value, str) and _date(value) is None for value in sent),
        "text_characters": lambda: any(_function_only_text(text) for text in _strings(body)),
    }
    oracle = oracles.get(rule)
    return None if oracle is None else oracle()
