"""Powertools idempotency over the stack's idempotency table."""

import os

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer


def idempotency_store() -> DynamoDBPersistenceLayer:
    """The persistence layer on IDEMPOTENCY_TABLE; call it at module scope, once per cold start."""
    return DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
