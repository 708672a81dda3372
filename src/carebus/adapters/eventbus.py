"""Putting domain events on the bus: every event of one invocation in as few PutEvents as the limit
allows, and each failure traced back to the work that produced it, so that only that work is retried."""

from collections.abc import Hashable, Mapping, Sequence
from itertools import batched
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:  # the approval token consumer puts no events: it never loads the event or encounter models
    from carebus.events import DomainEvent

_PUT_EVENTS_LIMIT = 10  # entries per PutEvents request

Entry = dict[str, str]


def entries(events: Sequence["DomainEvent"], bus_name: str) -> list[Entry]:
    """The PutEvents entries of these events: what a consumer's record returns to be announced (kept
    in the idempotency record, so that a redelivery announces the same events again)."""
    return [event.to_entry(bus_name) for event in events]


def put_entries[Key: Hashable](client: Any, entries_by_key: Mapping[Key, Sequence[Entry]]) -> dict[Key, str]:
    """Put every key's entries, ten per request across keys; the keys with an entry EventBridge did not
    accept, each with the error code. An entry that failed is not put again here: its key's work is
    retried as a whole, and a retry that repeats an accepted event repeats its eventId too."""
    tagged = [(key, entry) for key, key_entries in entries_by_key.items() for entry in key_entries]
    failed: dict[Key, str] = {}
    for chunk in batched(tagged, _PUT_EVENTS_LIMIT, strict=False):
        try:
            answer = client.put_events(Entries=[entry for _, entry in chunk])
        except (BotoCoreError, ClientError) as error:
            # botocore has retried what it retries; the chunk's work goes back to the queue instead.
            code = error.response["Error"]["Code"] if isinstance(error, ClientError) else type(error).__name__
            failed.update((key, code) for key, _ in chunk)
            continue
        if answer.get("FailedEntryCount", 0):
            for (key, _), result in zip(chunk, answer["Entries"], strict=True):
                if "ErrorCode" in result:
                    failed.setdefault(key, result["ErrorCode"])
    return failed
