"""POST /encounters' two-step commit: store the encounter once, then hand its reference on once.

The encounter id comes from the caller and the Idempotency-Key, so every retry of a submission finds the
same record and completes what an earlier attempt left undone. Once SNS has taken the reference the
submission is accepted, whatever happens to the bookkeeping after. When the publish fails it may still
have taken effect (a lost reply): the caller is told to retry, the record stays for that retry, and if
no retry comes DynamoDB deletes it after UNCONFIRMED_RETENTION.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from carebus.adapters.dynamo import Table
from carebus.errors import ConflictError, ServiceUnavailableError
from carebus.messages import reference_body, routing_attributes
from carebus.models import EncounterRequest
from carebus.submission import UNCONFIRMED_EXPIRY_ATTRIBUTE, UNCONFIRMED_RETENTION, unconfirmed_expiry


@dataclass(frozen=True, slots=True)
class Submission:
    """One accepted request body, as the edge validated it."""

    encounter_id: str
    caller: str
    request: EncounterRequest
    body_hash: str


class EncounterIntake:
    """The encounters table and the encounter topic, as intake uses them."""

    def __init__(self, encounters: Table, sns: Any, topic_arn: str, logger: Logger) -> None:
        self.encounters = encounters
        self.sns = sns
        self.topic_arn = topic_arn
        self.logger = logger

    def accept(self, submission: Submission, now: datetime) -> bool:
        """Store (once) and publish (once); True when this call published the reference."""
        record = self._stored(submission, now)
        if record.get("publishedAt"):
            return False
        key = {"encounterId": submission.encounter_id}
        try:
            self.sns.publish(
                TopicArn=self.topic_arn,
                Message=reference_body(submission.encounter_id),
                MessageAttributes=routing_attributes(submission.encounter_id, submission.request),
            )
        except (BotoCoreError, ClientError) as error:
            self.logger.error(
                "Publishing the encounter reference failed", extra={"error": type(error).__name__}
            )
            self._keep_for_a_retry(key, now)
            raise ServiceUnavailableError(
                "the encounter is stored but could not be handed on; send the same request with the same "
                f"Idempotency-Key again (within {UNCONFIRMED_RETENTION.days} days)"
            ) from error
        self._mark_published(key, now)
        return True

    def _stored(self, submission: Submission, now: datetime) -> dict[str, Any]:
        record: dict[str, Any] = {
            "encounterId": submission.encounter_id,
            "submittedBy": submission.caller,
            "submittedAt": now.isoformat(),
            "bodyHash": submission.body_hash,
            "status": "ACCEPTED",
            "encounter": submission.request.model_dump(mode="json", by_alias=True),
        }
        if self.encounters.put_new(record, "encounterId"):
            return record
        stored = self.encounters.get({"encounterId": submission.encounter_id}) or {}
        if stored.get("submittedBy") != submission.caller or stored.get("bodyHash") != submission.body_hash:
            raise ConflictError("the Idempotency-Key was already used for a different encounter")
        return stored

    def _keep_for_a_retry(self, key: dict[str, str], now: datetime) -> None:
        """Let DynamoDB delete the record if no retry completes it (best effort: the caller retries)."""
        try:
            self.encounters.update(
                key,
                set_values={UNCONFIRMED_EXPIRY_ATTRIBUTE: unconfirmed_expiry(now)},
                condition="attribute_exists(encounterId) AND attribute_not_exists(publishedAt)",
            )
        except (BotoCoreError, ClientError) as error:
            self.logger.warning(
                "Marking the unconfirmed encounter failed", extra={"error": type(error).__name__}
            )

    def _mark_published(self, key: dict[str, str], now: datetime) -> None:
        """Record the fan-out. SNS took the reference: a failure here changes no answer (a retry of the
        same request would publish once more, which consumers dedupe), so it is logged, not raised."""
        try:
            self.encounters.update(
                key,
                set_values={"publishedAt": now.isoformat()},
                remove=(UNCONFIRMED_EXPIRY_ATTRIBUTE,),
                condition="attribute_exists(encounterId)",
            )
        except (BotoCoreError, ClientError) as error:
            self.logger.warning(
                "Marking the encounter published failed", extra={"error": type(error).__name__}
            )
