"""DynamoDB records as plain dicts, with writes that never overwrite what another attempt stored."""

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from carebus.errors import CarebusError

# DynamoDB's limits per request: keys of a BatchGetItem, items of a TransactWriteItems.
_BATCH_GET_LIMIT = 100
_TRANSACTION_LIMIT = 100
# Unprocessed keys are asked for again after a short, growing pause (AWS's advice for batch reads).
_UNPROCESSED_RETRY_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; carebus stores whole numbers only (cents, counts)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def to_item(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record in DynamoDB's attribute-value form; None fields are left out rather than stored."""
    return {key: _serializer.serialize(value) for key, value in record.items() if value is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A record from DynamoDB's attribute-value form."""
    return {key: _plain(_deserializer.deserialize(value)) for key, value in item.items()}


class BatchReadIncompleteError(CarebusError):
    """DynamoDB kept leaving keys of a batch read unprocessed (throttling); the caller retries later."""


def cancellation_reasons(error: ClientError) -> list[str | None] | None:
    """Each item's reason code when a transaction was cancelled (None for an item that was fine), or
    None when the error is no cancelled transaction."""
    if error.response["Error"]["Code"] != "TransactionCanceledException":
        return None
    return [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]


def is_conditional_check_failure(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class Table:
    """One table through a shared low-level client (cheaper to create than boto3's resource API)."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        answer = self.client.get_item(TableName=self.name, Key=to_item(key), ConsistentRead=True)
        return from_item(answer["Item"]) if "Item" in answer else None

    def get_many(self, keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The records stored under these keys (strongly consistent, in no particular order; a key with
        no record is left out), in one BatchGetItem per hundred keys."""
        records: list[dict[str, Any]] = []
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self.name: {
                    "Keys": [to_item(key) for key in keys[start : start + _BATCH_GET_LIMIT]],
                    "ConsistentRead": True,
                }
            }
            for pause in (0.0, *_UNPROCESSED_RETRY_PAUSES):
                time.sleep(pause)
                answer = self.client.batch_get_item(RequestItems=pending)
                records.extend(from_item(item) for item in answer["Responses"].get(self.name, []))
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise BatchReadIncompleteError(f"{self.name}: keys left unprocessed after every retry")
        return records

    def put_all_new(self, records: Sequence[Mapping[str, Any]], key_attribute: str) -> list[bool]:
        """Store each record unless one with its key exists, all in one transaction per hundred records;
        for each record, True when this call stored it (False: it was there already, left as it was)."""
        stored = [False] * len(records)
        for start in range(0, len(records), _TRANSACTION_LIMIT):
            pending = list(range(start, min(start + _TRANSACTION_LIMIT, len(records))))
            # A cancelled transaction wrote nothing; it names the records that exist, and the rest are
            # written again: at most one more transaction.
            while pending:
                existing = self._transact_put_new([records[index] for index in pending], key_attribute)
                if existing is None:
                    for index in pending:
                        stored[index] = True
                    break
                pending = [index for position, index in enumerate(pending) if position not in existing]
        return stored

    def _transact_put_new(self, records: Sequence[Mapping[str, Any]], key_attribute: str) -> set[int] | None:
        """None when every record was written; else the positions of those that already exist."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.name,
                            "Item": to_item(record),
                            "ConditionExpression": "attribute_not_exists(#key)",
                            "ExpressionAttributeNames": {"#key": key_attribute},
                        }
                    }
                    for record in records
                ]
            )
        except ClientError as error:
            reasons = cancellation_reasons(error)
            if reasons is None:
                raise
            existing = {position for position, code in enumerate(reasons) if code == "ConditionalCheckFailed"}
            # Any other reason (a conflicting transaction, throttling) is an error to retry later.
            if not existing or any(code not in (None, "None", "ConditionalCheckFailed") for code in reasons):
                raise
            return existing
        return None

    def put_new(self, record: Mapping[str, Any], key_attribute: str) -> bool:
        """Store the record unless one with its key exists; False when it already did."""
        try:
            self.client.put_item(
                TableName=self.name,
                Item=to_item(record),
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": key_attribute},
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def _update_request(
        self,
        key: Mapping[str, Any],
        set_values: Mapping[str, Any],
        remove: tuple[str, ...],
        condition: str,
        condition_values: Mapping[str, Any] | None,
        condition_names: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        """An UpdateItem request: placeholders for every attribute name and value, so none clashes with
        a DynamoDB reserved word."""
        names = {f"#s{index}": name for index, name in enumerate(set_values)}
        names |= {f"#r{index}": name for index, name in enumerate(remove)}
        values = {f":s{index}": value for index, value in enumerate(set_values.values())}
        clauses = []
        if set_values:
            clauses.append("SET " + ", ".join(f"#s{index} = :s{index}" for index in range(len(set_values))))
        if remove:
            clauses.append("REMOVE " + ", ".join(f"#r{index}" for index in range(len(remove))))
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": to_item(key),
            "UpdateExpression": " ".join(clauses),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {**names, **(condition_names or {})},
        }
        if values or condition_values:
            request["ExpressionAttributeValues"] = to_item({**values, **(condition_values or {})})
        return request

    def update(
        self,
        key: Mapping[str, Any],
        *,
        set_values: Mapping[str, Any] | None = None,
        remove: tuple[str, ...] = (),
        condition: str,
        condition_values: Mapping[str, Any] | None = None,
        condition_names: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """Set and remove attributes if the condition holds; the record as it now is, or None if not."""
        request = self._update_request(
            key, dict(set_values or {}), remove, condition, condition_values, condition_names
        )
        try:
            answer = self.client.update_item(**request, ReturnValues="ALL_NEW")
        except ClientError as error:
            if is_conditional_check_failure(error):
                return None
            raise
        return from_item(answer["Attributes"])

    def query(
        self,
        condition: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
        index: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every record matching a key condition, across pages, in key order (of the index, if named;
        an index is read eventually consistent, as DynamoDB allows no other)."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
            "ConsistentRead": index is None,
        }
        if index:
            request["IndexName"] = index
        if names:
            request["ExpressionAttributeNames"] = dict(names)
        records: list[dict[str, Any]] = []
        for page in self.client.get_paginator("query").paginate(**request):
            records.extend(from_item(item) for item in page["Items"])
        return records

    def query_page(
        self,
        condition: str,
        values: Mapping[str, Any],
        index: str,
        limit: int,
        start_after: Mapping[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Up to `limit` records of an index matching a key condition, after the record whose keys are
        start_after, in key order; and the keys to start after next time (None: no record is left)."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
            "Limit": limit,
        }
        if start_after:
            request["ExclusiveStartKey"] = to_item(start_after)
        answer = self.client.query(**request)
        last = answer.get("LastEvaluatedKey")
        return [from_item(item) for item in answer["Items"]], from_item(last) if last else None
