"""An encounter submission: the Idempotency-Key every one must carry, the encounter id it derives, the body
hash that tells a retry from a different request, and how long an unconfirmed submission is kept."""

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from carebus.models import EncounterRequest

# Encounter ids derived from (caller, Idempotency-Key) live in this namespace, so a retry finds its record.
IDEMPOTENT_ENCOUNTER_IDS: Final = uuid.UUID("5b0f2f7e-3f4c-4d38-9a43-2d8e1c6a9b10")
# A stored encounter whose fan-out was never confirmed waits this long for the caller's retry (which
# completes it), then DynamoDB deletes it: the caller was told the submission failed.
UNCONFIRMED_RETENTION: Final = timedelta(days=7)
# The attribute DynamoDB's time to live reads on the encounters table (template.yaml names it too).
UNCONFIRMED_EXPIRY_ATTRIBUTE: Final = "unconfirmedExpiresAt"


class IdempotencyHeader(BaseModel):
    """The Idempotency-Key header, required: it is what makes every retry of a submission safe."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,255}$")


def encounter_id_for(caller: str, idempotency_key: str) -> str:
    """The encounter a caller's key names: the same on every retry, different for every caller."""
    return str(uuid.uuid5(IDEMPOTENT_ENCOUNTER_IDS, f"{caller}\n{idempotency_key}"))


def body_hash(request: EncounterRequest) -> str:
    """A hash of the normalised request, so whitespace or key order do not make a "different body"."""
    document = request.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def unconfirmed_expiry(now: datetime) -> int:
    """When DynamoDB may delete a submission whose fan-out was not confirmed (epoch seconds)."""
    return int((now + UNCONFIRMED_RETENTION).timestamp())
