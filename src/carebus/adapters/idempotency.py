"""Powertools idempotency over the stack's idempotency table."""

import os
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer


def idempotency_store(dynamodb: Any) -> DynamoDBPersistenceLayer:
    """The persistence layer on IDEMPOTENCY_TABLE through the function's own DynamoDB client (a layer
    left to open its own boto3 session adds about 40 ms to every cold start); call it at module scope."""
    return DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"], boto3_client=dynamodb)
