"""GET /encounters/{encounterId}: where an encounter got to (claim, appointment, prescriptions)."""

import os
import re
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.adapters.api import Caller, caller_of, install_problem_answers
from carebus.adapters.dynamo import Table
from carebus.adapters.encounters import EncounterNotFoundError, StoredEncounter, load_encounter
from carebus.adapters.tracing import TRACED_LIBRARIES
from carebus.auth import Role
from carebus.messages import ENCOUNTER_ID_PATTERN

_ENCOUNTER_ID = re.compile(ENCOUNTER_ID_PATTERN)
_PRESCRIPTION_FIELDS = (
    "prescriptionId",
    "rxnormCode",
    "drug",
    "quantity",
    "refills",
    "deaSchedule",
    "status",
)
_CLAIM_FIELDS = ("claimId", "status", "lines", "totalCents", "diagnosisCodes")
_APPOINTMENT_FIELDS = ("appointmentId", "status", "start", "visitType", "reason")

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
app = APIGatewayRestResolver()
install_problem_answers(app, logger)

dynamodb = boto3.client("dynamodb")
encounters = Table(dynamodb, os.environ["ENCOUNTERS_TABLE"])
claims = Table(dynamodb, os.environ["CLAIMS_TABLE"])
appointments = Table(dynamodb, os.environ["APPOINTMENTS_TABLE"])
prescriptions = Table(dynamodb, os.environ["PRESCRIPTIONS_TABLE"])


def _only(record: dict[str, Any] | None, fields: tuple[str, ...]) -> dict[str, Any] | None:
    return None if record is None else {name: record[name] for name in fields if name in record}


def visible_encounter(caller: Caller, encounter_id: str) -> StoredEncounter:
    """The encounter if this caller may see it; otherwise not found, so ids cannot be probed."""
    if not _ENCOUNTER_ID.fullmatch(encounter_id):
        # Never quoted back: it may be anything, of any length.
        raise EncounterNotFoundError("no encounter has this id")
    encounter = load_encounter(encounters, encounter_id)
    if encounter.submitted_by != caller.subject and not caller.has(Role.PHARMACIST):
        raise EncounterNotFoundError(f"no encounter {encounter_id}")
    return encounter


def prescription_view(encounter_id: str) -> list[dict[str, Any]]:
    records = prescriptions.query("encounterId = :id", {":id": encounter_id})
    return [_only(record, _PRESCRIPTION_FIELDS) or {} for record in records]


@app.get("/encounters/<encounter_id>")
@tracer.capture_method
def read_encounter(encounter_id: str) -> dict[str, Any]:
    caller = caller_of(app)
    caller.require(Role.PHYSICIAN, Role.PHARMACIST)
    encounter = visible_encounter(caller, encounter_id)
    logger.append_keys(encounter_id=encounter_id)
    request = encounter.request
    if encounter.submitted_by != caller.subject:
        # A pharmacist who did not submit the encounter sees its prescriptions only.
        return {"encounterId": encounter_id, "prescriptions": prescription_view(encounter_id)}
    return {
        "encounterId": encounter_id,
        "status": "PUBLISHED" if encounter.published_at else "ACCEPTED",
        "submittedAt": encounter.submitted_at,
        "expected": {
            "claim": bool(request.procedures),
            "appointment": request.follow_up is not None,
            "prescriptions": len(request.prescriptions),
        },
        "claim": _only(claims.get({"encounterId": encounter_id}), _CLAIM_FIELDS),
        "appointment": _only(
            appointments.get({"pk": f"ENCOUNTER#{encounter_id}", "sk": "APPOINTMENT"}), _APPOINTMENT_FIELDS
        ),
        "prescriptions": prescription_view(encounter_id),
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
