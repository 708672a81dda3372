"""Partner API v1: GET /claims (submitted since a time, a page at a time) and GET /claims/{claimId}.

API Gateway has already checked the partner's access token (the claims.read scope) and its API key (its
usage plan); every partner with that scope reads every claim. Answers carry no patient demographics.
"""

import os
from datetime import UTC, date, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from carebus.adapters.api import install_problem_answers
from carebus.adapters.dynamo import Table
from carebus.adapters.tracing import TRACED_LIBRARIES
from carebus.errors import NotFoundError
from carebus.partner import ClaimsQuery, claims_page, encounter_id_of_claim, partner_claim, since_stamp

logger = Logger()
tracer = Tracer(patch_modules=TRACED_LIBRARIES)
app = APIGatewayRestResolver()
install_problem_answers(app, logger)

dynamodb = boto3.client("dynamodb")
claims = Table(dynamodb, os.environ["CLAIMS_TABLE"])
CLAIMS_BY_DAY_INDEX = os.environ["CLAIMS_BY_DAY_INDEX"]


def current_time() -> datetime:
    return datetime.now(UTC)


def _partner() -> str | None:
    """The calling partner's app client (its machine credential), for the logs."""
    claims_of_token = app.current_event.request_context.authorizer.claims or {}
    return claims_of_token.get("client_id")


@app.get("/claims")
@tracer.capture_method
def list_claims() -> dict[str, Any]:
    query = ClaimsQuery.model_validate(app.current_event.query_string_parameters or {})
    now = current_time()
    query.check_window(now)
    since = since_stamp(query)

    def read_day(day: date, limit: int, start_after: Any) -> tuple[list[dict[str, Any]], Any]:
        return claims.query_page(
            "submittedDay = :day AND submittedAt >= :since",
            {":day": day.isoformat(), ":since": since},
            CLAIMS_BY_DAY_INDEX,
            limit,
            start_after,
        )

    page = claims_page(query, now.date(), read_day)
    logger.info("Claims listed", extra={"partner": _partner(), "claims": len(page["claims"])})
    return page


@app.get("/claims/<claim_id>")
@tracer.capture_method
def read_claim(claim_id: str) -> dict[str, Any]:
    record = claims.get({"encounterId": encounter_id_of_claim(claim_id)})
    if record is None:
        raise NotFoundError(f"no claim {claim_id}")
    logger.info("Claim read", extra={"partner": _partner(), "claim_id": claim_id})
    return partner_claim(record)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
