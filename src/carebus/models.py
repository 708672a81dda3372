"""Validated request models for encounters, with camelCase JSON aliases and federal prescribing rules."""

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from carebus.codes import is_valid_cpt, is_valid_dea, is_valid_hcpcs, is_valid_icd10cm, is_valid_npi

type DeaSchedule = Literal["II", "III", "IV", "V"]

MAX_FOLLOW_UP_WINDOW: Final = timedelta(days=90)
# 21 CFR 1306.12 forbids refilling schedule II; 21 CFR 1306.22 caps schedules III and IV at five.
_MAX_REFILLS_BY_SCHEDULE: Final[Mapping[str, int]] = {"II": 0, "III": 5, "IV": 5}


def _normalise_code(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


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


type Npi = Annotated[str, AfterValidator(_valid_npi)]
type DeaNumber = Annotated[str, BeforeValidator(_normalise_code), AfterValidator(_valid_dea)]
type Icd10CmCode = Annotated[str, BeforeValidator(_normalise_code), AfterValidator(_valid_icd10cm)]
type NotFutureDate = Annotated[date, AfterValidator(_not_in_future)]


def field_error(model: str, field: str, code: str, message: str) -> ValidationError:
    """A validation error located at one JSON field, for rules that span fields (model validators).

    Built by hand: errors a model validator raises would have no location, and errors on an absent
    field are located by Python name, not by JSON alias.
    """
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=PydanticCustomError(code, message), loc=(field,), input=None)]
    )


class _RequestModel(BaseModel):
    model_config = ConfigDict(
        # str(ValidationError) would otherwise quote the offending values (PHI) into any log line.
        hide_input_in_errors=True,
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        populate_by_name=True,
        serialize_by_alias=True,
    )


class Patient(_RequestModel):
    """The patient seen; every field but the opaque id is PHI and is kept out of repr and str."""

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200, repr=False)
    birth_date: NotFutureDate = Field(repr=False)
    insurance_member_id: str = Field(min_length=1, max_length=64, repr=False)


class Diagnosis(_RequestModel):
    """A diagnosis coded in ICD-10-CM."""

    system: Literal["ICD-10-CM"]
    code: Icd10CmCode


class Procedure(_RequestModel):
    """A billable procedure coded in CPT or HCPCS Level II."""

    system: Literal["CPT", "HCPCS"]
    code: Annotated[str, BeforeValidator(_normalise_code)]
    units: int = Field(ge=1, le=999)
    charge_cents: int = Field(ge=0, le=100_000_000)

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

    earliest: date
    latest: date
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


class Prescription(_RequestModel):
    """A prescription; a DEA schedule marks it as a controlled substance."""

    rxnorm_code: str = Field(pattern=r"^[0-9]{1,10}$")
    drug: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1, le=10_000)
    # Declared before refills so that the refill validator can see it.
    dea_schedule: DeaSchedule | None = None
    refills: int = Field(ge=0, le=11)

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


class EncounterRequest(_RequestModel):
    """A completed encounter as submitted by the practice; the root of every downstream workflow."""

    patient: Patient
    practitioner_npi: Npi
    encounter_date: NotFutureDate
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
