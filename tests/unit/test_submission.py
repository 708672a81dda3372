from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from unit_factories import encounter

from carebus.submission import (
    UNCONFIRMED_RETENTION,
    IdempotencyHeader,
    body_hash,
    encounter_id_for,
    unconfirmed_expiry,
)

KEYS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255)


@given(caller=st.uuids(), key=KEYS)
def test_a_retry_names_the_same_encounter_and_another_caller_another(caller, key):
    assert encounter_id_for(str(caller), key) == encounter_id_for(str(caller), key)
    assert encounter_id_for(str(caller), key) != encounter_id_for(f"{caller}-other", key)


def test_the_key_is_required_and_visible_ascii_of_at_most_255_characters():
    assert IdempotencyHeader.model_validate({"Idempotency-Key": "visit-0001"}).key == "visit-0001"
    for refused in ({}, {"Idempotency-Key": ""}, {"Idempotency-Key": "x" * 256}, {"Idempotency-Key": "a b"}):
        with pytest.raises(ValidationError) as caught:
            IdempotencyHeader.model_validate(refused)
        assert [error["loc"] for error in caught.value.errors()] == [("Idempotency-Key",)]


def test_the_body_hash_ignores_layout_but_not_content():
    request = encounter()
    reordered = type(request).model_validate(dict(reversed(request.model_dump(by_alias=True).items())))
    changed = request.model_copy(update={"encounter_type": "TELEHEALTH"})

    assert body_hash(reordered) == body_hash(request)
    assert body_hash(changed) != body_hash(request)


def test_an_unconfirmed_submission_expires_after_the_retention():
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)

    assert unconfirmed_expiry(now) == int((now + UNCONFIRMED_RETENTION).timestamp())
