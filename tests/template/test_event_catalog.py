"""One event contract: the models, the published schemas, the code that emits and the docs agree.

Every event the flow tests capture is also validated against the stack's published schema
(carebus_testing.StackDriver.bus_events); these tests hold the generation and the emitters to the models.
"""

import json
import re
from datetime import datetime
from typing import Any

import pytest
from jsonschema import Draft4Validator
from pydantic import Field, ValidationError
from unit.unit_factories import encounter

from carebus.billing import build_claim
from carebus.event_details import EVENT_DETAILS, ClaimSubmitted, EventDetail
from carebus.events import (
    appointment_booked,
    appointment_waitlisted,
    claim_submitted,
    prescription_approval_requested,
    prescription_released,
)
from carebus_local.creators_catalog import published_schemas
from carebus_local.template import PROJECT_ROOT, TEMPLATE_PATH, load_template
from carebus_tooling.event_catalog import (
    REGISTRY_ID,
    CatalogError,
    catalog_ids,
    consumers,
    emitters,
    event_schema,
    pattern_matches,
    render_template_catalog,
    schema_id,
    schema_name,
    workflow_entries,
)
from carebus_tooling.events_doc import EVENTS_DOC_PATH, EXAMPLE_FIELDS, example_detail, render_events_doc
from carebus_tooling.rehearsal_template import NOT_REHEARSED

DEFINITION = PROJECT_ROOT / "statemachines" / "prescription_approval.asl.json"
_FORMAT = re.compile(r"^States\.Format\('([^']*)\{\}', (\$\.[\w.]+)\)$")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def published(template) -> dict[str, dict[str, Any]]:
    """The schemas template.yaml publishes, by their name in the registry."""
    return {
        resource["Properties"]["SchemaName"]: json.loads(resource["Properties"]["Content"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::EventSchemas::Schema"
    }


def as_event(source: str, detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An event as a rule target receives it."""
    return {
        "version": "0",
        "id": "0d3f5b5e-0000-4000-8000-000000000000",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2025-03-13T10:15:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def errors_against(published: dict[str, dict[str, Any]], event: dict[str, Any]) -> list[str]:
    schema = published[schema_name(event["source"], event["detail-type"])]
    return [error.message for error in Draft4Validator(schema).iter_errors(event)]


def test_the_event_catalog_in_the_template_and_the_docs_is_what_generation_produces():
    text = TEMPLATE_PATH.read_text()
    assert render_template_catalog(text) == text, "the Event catalog is stale: run `make contract`"
    assert render_events_doc(text) == EVENTS_DOC_PATH.read_text(), "docs/events.md is stale: `make contract`"


def test_every_detail_type_has_one_published_draft_04_schema_generated_from_its_model(template, published):
    names = [schema_name(model.source, model.detail_type) for model in EVENT_DETAILS]
    assert sorted(published) == sorted(names)
    for model in EVENT_DETAILS:
        resource = template["Resources"][schema_id(model)]
        assert resource["Properties"]["Type"] == "JSONSchemaDraft4"
        assert resource["Properties"]["RegistryName"] == {"Fn::GetAtt": [REGISTRY_ID, "RegistryName"]}
        assert published[schema_name(model.source, model.detail_type)] == event_schema(model)
        Draft4Validator.check_schema(event_schema(model))


def test_every_event_the_python_builders_emit_fits_its_published_schema(published):
    request = encounter()
    claim = build_claim(
        EXAMPLE_FIELDS["encounter_id"], request.practitioner_npi, request.diagnoses, request.procedures
    )
    fields = EXAMPLE_FIELDS
    built = [
        claim_submitted(claim),
        appointment_booked(
            fields["encounter_id"], fields["appointment_id"], datetime.fromisoformat(fields["start"])
        ),
        appointment_waitlisted(fields["encounter_id"], fields["appointment_id"], fields["reason"]),
        prescription_released(fields["encounter_id"], fields["prescription_id"]),
        prescription_approval_requested(fields["encounter_id"], fields["prescription_id"], "II"),
    ]
    for event in built:
        detail = json.loads(event.to_entry("carebus-bus")["Detail"])
        assert errors_against(published, as_event(event.source, event.detail_type, detail)) == []


def workflow_detail(parameters: dict[str, Any], state_input: dict[str, Any]) -> dict[str, Any]:
    """What Step Functions makes of a Parameters block over an input (paths and States.Format only)."""

    def at(path: str) -> Any:
        value: Any = state_input
        for step in path.removeprefix("$.").split("."):
            value = value[step]
        return value

    detail: dict[str, Any] = {}
    for key, value in parameters.items():
        if not key.endswith(".$"):
            detail[key] = value
        elif formatted := _FORMAT.match(value):
            detail[key.removesuffix(".$")] = formatted.group(1) + str(at(formatted.group(2)))
        elif value.startswith("$."):
            detail[key.removesuffix(".$")] = at(value)
        else:
            raise AssertionError(f"the test reads paths and States.Format only, not {value!r}")
    return detail


def test_the_workflow_announces_exactly_the_shape_of_each_model(published):
    models = {model.detail_type: model for model in EVENT_DETAILS}
    state_input = {
        "encounterId": EXAMPLE_FIELDS["encounter_id"],
        "prescriptionId": EXAMPLE_FIELDS["prescription_id"],
        "approvalId": EXAMPLE_FIELDS["approval_id"],
        "decision": {"decidedBy": EXAMPLE_FIELDS["decided_by"], "decidedAt": EXAMPLE_FIELDS["decided_at"]},
    }
    announced = set()
    for state, entry in workflow_entries(json.loads(DEFINITION.read_text())):
        model = models[entry["DetailType"]]
        detail = workflow_detail(entry["Detail"], state_input)
        # Strict, closed and complete: a field the workflow adds, drops or mistypes fails here.
        assert model.model_validate(detail).model_dump(mode="json") == detail, state
        assert detail == example_detail(model), state
        assert errors_against(published, as_event(entry["Source"], entry["DetailType"], detail)) == [], state
        announced.add(model.detail_type)
    assert announced == {model.detail_type for model in EVENT_DETAILS if model.source == "carebus.approvals"}


def test_a_model_that_drifts_from_its_published_schema_is_caught(published):
    class Renamed(EventDetail):  # ClaimSubmitted with one field renamed and the schema not regenerated
        """A claim was submitted."""

        source = ClaimSubmitted.source
        subject = "claim_id"

        claim_id: str = Field(pattern=r"^clm-\S+$")
        line_count: int
        total_amount_cents: int

    detail = Renamed.about(
        encounter_id=EXAMPLE_FIELDS["encounter_id"], claim_id="clm-x", line_count=1, total_amount_cents=5
    ).model_dump(mode="json")
    detail["eventId"] = "ClaimSubmitted/clm-x"

    errors = errors_against(published, as_event(ClaimSubmitted.source, ClaimSubmitted.detail_type, detail))

    assert any("totalCents" in error for error in errors)
    assert any("totalAmountCents" in error for error in errors)


def test_a_detail_whose_event_id_is_not_its_fact_is_refused_by_the_model():
    with pytest.raises(ValidationError, match="eventId"):
        ClaimSubmitted(
            event_id="ClaimSubmitted/clm-other",
            encounter_id=EXAMPLE_FIELDS["encounter_id"],
            claim_id=EXAMPLE_FIELDS["claim_id"],
            line_count=1,
            total_cents=0,
        )


def test_each_event_names_the_code_that_emits_it(template):
    who = emitters(template)
    assert {detail_type: sorted({e.logical_id for e in found}) for detail_type, found in who.items()} == {
        "ClaimSubmitted": ["BillingFunction"],
        "AppointmentBooked": ["SchedulingFunction"],
        "AppointmentWaitlisted": ["SchedulingFunction"],
        "PrescriptionReleased": ["PrescriptionsFunction"],
        "PrescriptionApprovalRequested": ["PrescriptionsFunction"],
        "PrescriptionApproved": ["PrescriptionApprovalStateMachine"],
        "PrescriptionRejected": ["PrescriptionApprovalStateMachine"],
        "PrescriptionExpired": ["PrescriptionApprovalStateMachine"],
        "PrescriptionApprovalFailed": ["PrescriptionApprovalStateMachine"],
    }


def test_consumers_are_read_from_the_rules_event_patterns(template):
    read_by = consumers(template)
    for model in EVENT_DETAILS:
        matched = {consumer.logical_id for consumer in read_by[model.detail_type]}
        assert {"AuditRule", "CarebusBusArchive"} <= matched
    approval_rule = [
        detail_type
        for detail_type, found in read_by.items()
        if "PrescriptionApprovalRule" in {consumer.logical_id for consumer in found}
    ]
    assert approval_rule == ["PrescriptionApprovalRequested"]


def test_a_pattern_the_catalog_cannot_read_is_refused_by_name():
    with pytest.raises(CatalogError, match="SomeRule"):
        pattern_matches({"detail": {"x": [1]}}, "carebus.billing", "ClaimSubmitted", "SomeRule")
    with pytest.raises(CatalogError, match="SomeRule"):
        pattern_matches({"source": [{"anything-but": "x"}]}, "carebus.billing", "ClaimSubmitted", "SomeRule")


def test_the_rehearsal_leaves_out_every_catalog_resource_by_name():
    assert set(catalog_ids()) <= set(NOT_REHEARSED)


def test_the_offline_stack_publishes_the_catalog_with_cloudformation_attributes(stack):
    registry = stack.resources[REGISTRY_ID]
    assert registry.attributes["RegistryName"] == f"{stack.name}-events"
    assert registry.ref == registry.attributes["RegistryArn"]
    schema = stack.resources[schema_id(ClaimSubmitted)]
    assert schema.attributes == {
        "SchemaArn": schema.ref,
        "SchemaName": "carebus.billing@ClaimSubmitted",
        "SchemaVersion": "1",
    }
    assert published_schemas(stack)["carebus.billing@ClaimSubmitted"] == event_schema(ClaimSubmitted)
