"""The fan-out message contract: SNS publishes a PHI-free reference that SQS delivers raw."""

from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from carebus.errors import MalformedMessageError

if TYPE_CHECKING:  # only the intake builds routing attributes; the consumers never load the encounter models
    from carebus.models import EncounterRequest

ENCOUNTER_ID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class EncounterReference(BaseModel):
    """The message body: which encounter to load, never the encounter itself."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        serialize_by_alias=True,
    )

    schema_version: Literal[1]
    # Canonical lower-case form only, so that every consumer derives the same ids from it.
    encounter_id: str = Field(pattern=ENCOUNTER_ID_PATTERN)


def parse_reference(body: str) -> EncounterReference:
    """The reference in a message body, or MalformedMessageError naming the failed fields (not values)."""
    try:
        return EncounterReference.model_validate_json(body)
    except ValidationError as error:
        problems = ", ".join(
            f"{'.'.join(map(str, line['loc'])) or 'body'}: {line['type']}" for line in error.errors()
        )
        # from None: the chained ValidationError would quote the payload in logged tracebacks.
        raise MalformedMessageError(f"not an encounter reference ({problems})") from None


def reference_body(encounter_id: str) -> str:
    """The compact JSON message body referring to an encounter."""
    return EncounterReference(schema_version=1, encounter_id=encounter_id).model_dump_json()


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _number(value: int) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": str(value)}


def routing_attributes(encounter_id: str, request: "EncounterRequest") -> dict[str, dict[str, str]]:
    """SNS message attributes that subscription filter policies route on; counts and flags only."""
    return {
        "encounterId": _string(encounter_id),
        "procedureCount": _number(len(request.procedures)),
        "followUpRequested": _string("true" if request.follow_up else "false"),
        "prescriptionCount": _number(len(request.prescriptions)),
        "controlledPrescriptionCount": _number(request.controlled_prescription_count),
    }
