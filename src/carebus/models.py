"""The encounter request: the API's contract, with camelCase JSON names and federal prescribing rules.

These models are the one source of the request contract: the published description (docs/openapi.yaml)
and the gateway's models in template.yaml are generated from their JSON Schema (`make contract`). What a
schema can say (shapes, lengths, the refills a schedule allows, the DEA number a controlled prescription
needs) is in it; FUNCTION_ONLY_RULES lists what only the function checks (check digits, dates).
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from carebus.codes import (
    CPT_SHAPE,
    DEA_SHAPE,
    HCPCS_SHAPE,
    ICD10CM_SHAPE,
    NPI_SHAPE,
    is_valid_cpt,
    is_valid_dea,
    is_valid_hcpcs,
    is_valid_icd10cm,
    is_valid_npi,
)
from carebus.fields import DeaSchedule, field_error
from carebus.text import TEXT_PATTERN, printable_text

MAX_FOLLOW_UP_WINDOW: Final = timedelta(days=90)
# Nobody alive was born before this; an earlier birth date is a typing error.
EARLIEST_BIRTH_DATE: Final = date(1900, 1, 1)
# 21 CFR 1306.12 forbids refilling schedule II; 21 CFR 1306.22 caps schedules III and IV at five.
_MAX_REFILLS_BY_SCHEDULE: Final[Mapping[str, int]] = {"II": 0, "III": 5, "IV": 5}
_MAX_REFILLS: Final = 11
# A calendar date's shape; whether the day exists in its month (2025-02-30) is the function's to check.
_ISO_DATE_SHAPE: Final = "^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$"

# What only the function checks, by the error code it answers: a request the description allows may
# still be refused for these, and for nothing else (docs/api.md lists them; a fuzzing test holds to it).
FUNCTION_ONLY_RULES: Final[Mapping[str, str]] = {
    "invalid_npi": "practitionerNpi must carry a valid NPI check digit (format npi)",
    "invalid_dea": "prescriberDea must carry a valid DEA check digit (format dea-registration-number)",
    "date_in_future": "encounterDate and patient.birthDate must not be later than tomorrow (UTC)",
    "birth_date_too_early": f"patient.birthDate must not be before {EARLIEST_BIRTH_DATE.isoformat()}",
    "birth_date_after_encounter": "patient.birthDate must not be after encounterDate",
    "follow_up_before_encounter": "followUp.earliest must not be before encounterDate",
    "follow_up_window_reversed": "followUp.latest must not be before followUp.earliest",
    "follow_up_window_too_long": f"followUp.latest must be at most {MAX_FOLLOW_UP_WINDOW.days} days "
    "after followUp.earliest",
    "date_parsing": "a date must exist in the calendar (format date): the schema checks its shape only",
    "text_characters": "text must not hold format characters or noncharacters beyond the Basic Multilingual "
    "Plane, nor unpaired surrogates",
}


def _shape(shape: str, **extra: str) -> Any:
    """A field's pattern (and format) in the JSON Schema only: the function's validator checks it, with
    its own message."""
    return Field(json_schema_extra={"pattern": f"^{shape}$", **extra})


def _valid_npi(npi: str) -> str:
    if not is_valid_npi(npi):
        raise PydanticCustomError("invalid_npi", "Must be a 10-digit NPI with a valid check digit")
    return npi


def _valid_dea(dea: str) -> str:
    if not is_valid_dea(dea):
        raise PydanticCustomError("invalid_dea", "Must be a DEA registration number with a valid check digit")
    return dea


def _valid_icd10cm(code: str) -> str:
    if not is_valid_icd10cm(code):
        raise PydanticCustomError("invalid_icd10cm", "Must be an ICD-10-CM code such as E11.9")
    return code


def _latest_acceptable_date(info: ValidationInfo) -> date:
    context = info.context if isinstance(info.context, Mapping) else {}
    today = context.get("today") or datetime.now(UTC).date()
    # Clinics east of UTC are already on the next calendar day while UTC is still on "today".
    return today + timedelta(days=1)


def _not_in_future(value: date, info: ValidationInfo) -> date:
    if value > _latest_acceptable_date(info):
        raise PydanticCustomError("date_in_future", "Must not be in the future")
    return value


Npi = Annotated[str, _shape(NPI_SHAPE, format="npi"), AfterValidator(_valid_npi)]
DeaNumber = Annotated[str, _shape(DEA_SHAPE, format="dea-registration-number"), AfterValidator(_valid_dea)]
Icd10CmCode = Annotated[str, _shape(ICD10CM_SHAPE), AfterValidator(_valid_icd10cm)]
IsoDate = Annotated[date, Field(json_schema_extra={"pattern": _ISO_DATE_SHAPE})]
NotFutureDate = Annotated[IsoDate, AfterValidator(_not_in_future)]
# A name or a line of text; free text may also break lines (carebus.text).
Text = Annotated[str, Field(json_schema_extra={"pattern": TEXT_PATTERN}), AfterValidator(printable_text)]


class _RequestModel(BaseModel):
    # Values are taken as sent: nothing is trimmed, upper-cased or converted (parse_request is strict).
    model_config = ConfigDict(
        # str(ValidationError) would otherwise quote the offending values (PHI) into any log line.
        hide_input_in_errors=True,
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        # Python names are for code; parse_request reads JSON by the camelCase names only.
        validate_by_name=True,
        serialize_by_alias=True,
    )


class Patient(_RequestModel):
    """The patient seen; every field but the opaque id is PHI and is kept out of repr and str."""

    id: Text = Field(min_length=1, max_length=64)
    name: Text = Field(min_length=1, max_length=200, repr=False)
    birth_date: NotFutureDate = Field(
        repr=False, description=f"Not before {EARLIEST_BIRTH_DATE.isoformat()}, nor after encounterDate"
    )
    insurance_member_id: Text = Field(min_length=1, max_length=64, repr=False)

    @field_validator("birth_date")
    @classmethod
    def _born_in_living_memory(cls, birth_date: date) -> date:
        if birth_date < EARLIEST_BIRTH_DATE:
            raise PydanticCustomError(
                "birth_date_too_early", f"Must not be before {EARLIEST_BIRTH_DATE.isoformat()}"
            )
        return birth_date


class Diagnosis(_RequestModel):
    """A diagnosis coded in ICD-10-CM."""

    system: Literal["ICD-10-CM"]
    code: Icd10CmCode


def _procedure_code_matches_its_system(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [
        {"properties": {"system": {"enum": [system]}, "code": {"pattern": f"^{shape}$"}}}
        for system, shape in (("CPT", CPT_SHAPE), ("HCPCS", HCPCS_SHAPE))
    ]


class Procedure(_RequestModel):
    """A billable procedure coded in CPT or HCPCS Level II."""

    model_config = ConfigDict(json_schema_extra=_procedure_code_matches_its_system)

    system: Literal["CPT", "HCPCS"]
    code: str = Field(json_schema_extra={"pattern": f"^(?:{CPT_SHAPE}|{HCPCS_SHAPE})$"})
    units: int = Field(ge=1, le=999, description="A JSON integer, written without a fraction or exponent")
    charge_cents: int = Field(
        ge=0, le=100_000_000, description="A JSON integer, written without a fraction or exponent"
    )

    @field_validator("code")
    @classmethod
    def _code_belongs_to_system(cls, code: str, info: ValidationInfo) -> str:
        system = info.data.get("system")
        if system == "CPT" and not is_valid_cpt(code):
            raise PydanticCustomError("invalid_cpt", "Must be a CPT code such as 99213")
        if system == "HCPCS" and not is_valid_hcpcs(code):
            raise PydanticCustomError("invalid_hcpcs", "Must be a HCPCS Level II code such as J3490")
        return code


class FollowUp(_RequestModel):
    """The window in which the follow-up visit should take place."""

    earliest: IsoDate = Field(description="Not before encounterDate")
    latest: IsoDate = Field(
        description=f"Not before earliest, and at most {MAX_FOLLOW_UP_WINDOW.days} days after it"
    )
    visit_type: Literal["OFFICE", "TELEHEALTH"]

    @field_validator("latest")
    @classmethod
    def _window_is_ordered_and_bounded(cls, latest: date, info: ValidationInfo) -> date:
        earliest: date | None = info.data.get("earliest")
        if earliest is None:
            return latest
        if latest < earliest:
            raise PydanticCustomError("follow_up_window_reversed", "Must not be before earliest")
        if latest - earliest > MAX_FOLLOW_UP_WINDOW:
            raise PydanticCustomError(
                "follow_up_window_too_long",
                f"Must be at most {MAX_FOLLOW_UP_WINDOW.days} days after earliest",
            )
        return latest


def _refills_within_schedule_limits(schema: dict[str, Any]) -> None:
    """The schedules' refill limits, in the schema: a limited schedule caps refills."""
    unlimited = [
        schedule for schedule in get_args(DeaSchedule.__value__) if schedule not in _MAX_REFILLS_BY_SCHEDULE
    ]
    by_limit: dict[int, list[str]] = {}
    for schedule, limit in _MAX_REFILLS_BY_SCHEDULE.items():
        by_limit.setdefault(limit, []).append(schedule)
    schema["anyOf"] = [
        {"properties": {"deaSchedule": {"enum": [*unlimited, None]}}},
        *(
            {
                "required": ["deaSchedule"],
                "properties": {"deaSchedule": {"enum": schedules}, "refills": {"maximum": limit}},
            }
            for limit, schedules in by_limit.items()
        ),
    ]


class Prescription(_RequestModel):
    """A prescription; a DEA schedule marks it as a controlled substance."""

    model_config = ConfigDict(json_schema_extra=_refills_within_schedule_limits)

    rxnorm_code: str = Field(pattern=r"^[0-9]{1,10}$")
    drug: Text = Field(min_length=1, max_length=200)
    quantity: int = Field(
        ge=1, le=10_000, description="A JSON integer, written without a fraction or exponent"
    )
    # Declared before refills so that the refill validator can see it.
    dea_schedule: DeaSchedule | None = None
    refills: int = Field(
        ge=0,
        le=_MAX_REFILLS,
        description="At most 0 for schedule II, 5 for schedules III and IV; a JSON integer",
    )

    @field_validator("refills")
    @classmethod
    def _refills_within_schedule_limit(cls, refills: int, info: ValidationInfo) -> int:
        schedule = info.data.get("dea_schedule")
        limit = _MAX_REFILLS_BY_SCHEDULE.get(schedule) if schedule else None
        if limit is not None and refills > limit:
            allowance = "cannot be refilled" if limit == 0 else f"allow at most {limit} refills"
            raise PydanticCustomError("too_many_refills", f"Schedule {schedule} prescriptions {allowance}")
        return refills

    @property
    def is_controlled(self) -> bool:
        """Whether the drug is a controlled substance (any DEA schedule)."""
        return self.dea_schedule is not None


def _dea_number_for_controlled_prescriptions(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [
        {"required": ["prescriberDea"], "properties": {"prescriberDea": {"type": "string"}}},
        {"properties": {"prescriptions": {"items": {"properties": {"deaSchedule": {"type": "null"}}}}}},
    ]


class EncounterRequest(_RequestModel):
    """A completed encounter as submitted by the practice; the root of every downstream workflow. A
    prescription with a DEA schedule needs the prescriber's DEA number."""

    model_config = ConfigDict(json_schema_extra=_dea_number_for_controlled_prescriptions)

    patient: Patient
    practitioner_npi: Npi
    encounter_date: NotFutureDate = Field(description="Not later than tomorrow (UTC)")
    encounter_type: Literal["OFFICE", "TELEHEALTH", "URGENT_CARE", "HOME"]
    # Lists, not tuples: a tuple with a failed item also reports a misleading "too short" error.
    diagnoses: list[Diagnosis] = Field(min_length=1, max_length=12)
    procedures: list[Procedure] = Field(default_factory=list, max_length=50)
    follow_up: FollowUp | None = None
    prescriptions: list[Prescription] = Field(default_factory=list, max_length=20)
    prescriber_dea: DeaNumber | None = None

    @field_validator("follow_up")
    @classmethod
    def _follow_up_not_before_encounter(
        cls, follow_up: FollowUp | None, info: ValidationInfo
    ) -> FollowUp | None:
        encounter_date: date | None = info.data.get("encounter_date")
        if follow_up and encounter_date and follow_up.earliest < encounter_date:
            raise PydanticCustomError(
                "follow_up_before_encounter", "The follow-up window must not start before the encounter date"
            )
        return follow_up

    @model_validator(mode="after")
    def _born_before_the_encounter(self) -> Self:
        if self.patient.birth_date > self.encounter_date:
            raise field_error(
                type(self).__name__,
                ("patient", "birthDate"),
                "birth_date_after_encounter",
                "Must not be after the encounter date",
            )
        return self

    @model_validator(mode="after")
    def _dea_present_for_controlled_prescriptions(self) -> Self:
        if self.prescriber_dea is None and self.controlled_prescription_count:
            raise field_error(
                type(self).__name__,
                "prescriberDea",
                "prescriber_dea_required",
                "A DEA registration number is required to prescribe controlled substances",
            )
        return self

    @property
    def controlled_prescription_count(self) -> int:
        """How many prescriptions are for controlled substances."""
        return sum(prescription.is_controlled for prescription in self.prescriptions)
