"""The detail of every domain event on the bus, one typed model per detail type: the event contract, once.

A model's name is its detail type. The Python builders (carebus.events) make each detail through its
model; the approval workflow writes its four in statemachines/prescription_approval.asl.json, and a test
checks that those produce exactly these models. carebus_tooling.event_catalog generates from them the
stack's schema registry (template.yaml) and docs/events.md.

schemaVersion 1 is the first published contract: the approval events dropped `reason` before any release
(no tag, no registry), so nothing consumed the older shape. From now on a field removed, renamed, retyped
or made optional raises the version; a field added keeps it (the registry gets a new schema version).
"""

import re
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from carebus.fields import DeaSchedule
from carebus.messages import ENCOUNTER_ID_PATTERN

SCHEMA_VERSION: Final = 1

SOURCE_BILLING: Final = "carebus.billing"
SOURCE_SCHEDULING: Final = "carebus.scheduling"
SOURCE_PRESCRIPTIONS: Final = "carebus.prescriptions"
# Put by the approval workflow itself (statemachines/prescription_approval.asl.json), not by Python.
SOURCE_APPROVALS: Final = "carebus.approvals"

# The ids downstream of an encounter, by their prefixes (each is derived from the encounter id).
ClaimId = Annotated[str, Field(pattern=r"^clm-\S+$", description="The claim: `clm-` and the encounter id.")]
AppointmentId = Annotated[
    str, Field(pattern=r"^apt-\S+$", description="The appointment: `apt-` and the encounter id.")
]
PrescriptionId = Annotated[
    str,
    Field(
        pattern=r"^rx-\S+$",
        description="The prescription: `rx-`, the encounter id and its position in the encounter (from 1).",
    ),
]
ApprovalId = Annotated[
    str, Field(pattern=r"^apr-rx-\S+$", description="The approval: `apr-` and the prescription id.")
]
PharmacistId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="The deciding pharmacist's user id (Cognito `sub`): an opaque id, never a name.",
    ),
]
DecidedAt = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        json_schema_extra={"format": "date-time"},
        description="When the pharmacist decided (ISO 8601 with an offset).",
    ),
]


def event_id(detail_type: str, subject_id: str) -> str:
    """The id of the one fact an event states: its detail type and the id of what it is about. The
    approval workflow builds the same form (States.Format('<DetailType>/{}', $.approvalId))."""
    if not subject_id:
        raise ValueError("an event is about something: its subject id must not be empty")
    return f"{detail_type}/{subject_id}"


def _event_id_pattern(schema: dict[str, Any], model: type[Any]) -> None:
    """eventId's pattern: the model's detail type, then its subject's pattern (draft-04 cannot say that
    it equals the subject field; the model checks that)."""
    subject = schema["properties"][to_camel(model.subject)]
    schema["properties"]["eventId"]["pattern"] = f"^{re.escape(model.__name__)}/{subject['pattern'][1:]}"


class EventDetail(BaseModel):
    """What every detail carries: its version, the fact it states and the encounter it follows from."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        serialize_by_alias=True,
        strict=True,
        # Built on first use: a function builds the one or two detail types it emits, not all nine.
        defer_build=True,
        # The published schema describes what is emitted, and every emitted detail has every field.
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_event_id_pattern,
    )

    # Set by each detail type: who puts it, and which field names what the event is about.
    source: ClassVar[str]
    subject: ClassVar[str]
    detail_type: ClassVar[str]

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION,
        description="The version of this detail's shape; a breaking change raises it.",
    )
    event_id: str = Field(
        description=(
            "The fact this event states: its detail type and the id of what it is about. Every repeat of "
            "the fact (a redelivery, a retry, an archive replay) carries the same eventId: dedupe on it."
        ),
    )
    encounter_id: str = Field(
        pattern=ENCOUNTER_ID_PATTERN,
        description="The encounter this follows from; every log line of its path carries it too.",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.detail_type = cls.__name__

    @classmethod
    def about(cls, **fields: Any) -> Self:
        """The detail of this type with the eventId of its subject."""
        return cls(event_id=event_id(cls.detail_type, fields[cls.subject]), **fields)

    @model_validator(mode="after")
    def _event_id_names_this_fact(self) -> Self:
        if self.event_id != event_id(self.detail_type, getattr(self, self.subject)):
            raise ValueError(f"eventId must be {self.detail_type}/ and the id of what the event is about")
        return self


class ClaimSubmitted(EventDetail):
    """A claim was submitted for an encounter: one line per procedure."""

    source = SOURCE_BILLING
    subject = "claim_id"

    claim_id: ClaimId
    line_count: int = Field(ge=1, description="How many lines the claim has (one per procedure).")
    total_cents: int = Field(ge=0, description="The claim's total in US cents (units x charge, summed).")


class AppointmentBooked(EventDetail):
    """A follow-up appointment was booked into a 30-minute slot of the practitioner."""

    source = SOURCE_SCHEDULING
    subject = "appointment_id"

    appointment_id: AppointmentId
    start: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
        json_schema_extra={"format": "date-time"},
        description="When the slot starts, in UTC (`2025-03-19T14:30:00Z`).",
    )


class AppointmentWaitlisted(EventDetail):
    """No slot fitted the follow-up window, so the appointment waits for someone to arrange it."""

    source = SOURCE_SCHEDULING
    subject = "appointment_id"

    appointment_id: AppointmentId
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="Why, as one fixed text per cause (never free text): see the examples.",
        examples=["no free slot in the follow-up window", "the follow-up window has already passed"],
    )


class PrescriptionReleased(EventDetail):
    """An uncontrolled prescription was released to the pharmacy."""

    source = SOURCE_PRESCRIPTIONS
    subject = "prescription_id"

    prescription_id: PrescriptionId


class PrescriptionApprovalRequested(EventDetail):
    """A controlled-substance prescription awaits a pharmacist's approval; it starts the approval workflow."""

    source = SOURCE_PRESCRIPTIONS
    subject = "prescription_id"

    prescription_id: PrescriptionId
    dea_schedule: DeaSchedule = Field(description="The drug's DEA schedule (II to V).")


class PrescriptionApproved(EventDetail):
    """A pharmacist approved a controlled prescription; it is APPROVED."""

    source = SOURCE_APPROVALS
    subject = "approval_id"

    prescription_id: PrescriptionId
    approval_id: ApprovalId
    decided_by: PharmacistId
    decided_at: DecidedAt


class PrescriptionRejected(EventDetail):
    """A pharmacist rejected a controlled prescription; it is REJECTED. The reason is free text that may
    name the patient: it stays in the approval and prescription records (read it through the API)."""

    source = SOURCE_APPROVALS
    subject = "approval_id"

    prescription_id: PrescriptionId
    approval_id: ApprovalId
    decided_by: PharmacistId
    decided_at: DecidedAt


class PrescriptionExpired(EventDetail):
    """Nobody decided, after the escalation either: the approval and the prescription are EXPIRED."""

    source = SOURCE_APPROVALS
    subject = "approval_id"

    prescription_id: PrescriptionId
    approval_id: ApprovalId


class PrescriptionApprovalFailed(EventDetail):
    """The approval workflow failed after its retries: the approval is FAILED, the prescription
    APPROVAL_FAILED, and an alarm fired."""

    source = SOURCE_APPROVALS
    subject = "approval_id"

    prescription_id: PrescriptionId
    approval_id: ApprovalId


# Every detail type on the bus, in the order the flow produces them.
EVENT_DETAILS: Final[tuple[type[EventDetail], ...]] = (
    ClaimSubmitted,
    AppointmentBooked,
    AppointmentWaitlisted,
    PrescriptionReleased,
    PrescriptionApprovalRequested,
    PrescriptionApproved,
    PrescriptionRejected,
    PrescriptionExpired,
    PrescriptionApprovalFailed,
)
