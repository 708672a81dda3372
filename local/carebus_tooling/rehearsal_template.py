"""The rehearsal's copy of the built template: what the engine cannot create is left out, by name.

NOT_REHEARSED names those resources and why; the rehearsal asks the engine what it creates and fails when
this list no longer matches it (the engine learnt something, or the template grew something it cannot
create), so the list cannot rot. Anything that refers to a left-out resource is left out with it.
"""

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cfnlint.decode import decode

from carebus_local.template import translate
from carebus_tooling.engine import EngineCapabilities
from carebus_tooling.event_catalog import catalog_ids
from carebus_tooling.references import referenced_ids

NOT_REHEARSED: Final[Mapping[str, str]] = {
    "CarebusBusArchive": "MiniStack has no CloudFormation provisioner for AWS::Events::Archive",
    "AuditEventCountsQuery": "MiniStack has no CloudFormation provisioner for AWS::Logs::QueryDefinition",
    "PrescriptionApprovalFailedAlarm": "MiniStack creates no alarm on metric math (Metrics, Expression)",
    "CarebusApiWebAclAssociation": (
        "MiniStack has no CloudFormation provisioner for AWS::WAFv2::WebACLAssociation "
        "(the rehearsal's parameters leave the web ACL off anyway: EnableWaf=false)"
    ),
    "PartnerApiWebAclAssociation": (
        "MiniStack has no CloudFormation provisioner for AWS::WAFv2::WebACLAssociation (EnableWaf=false)"
    ),
    # The clearinghouse integration is off in the rehearsal (no ClearinghouseEndpoint): the offline stack's
    # stand-in clearinghouse is where its delivery, retries and dead letters are proven.
    "ClearinghouseConnection": "MiniStack has no CloudFormation provisioner for AWS::Events::Connection",
    "ClearinghouseDestination": "MiniStack has no CloudFormation provisioner for AWS::Events::ApiDestination",
    # The schema registry is documentation for consumers: nothing in the stack reads it at run time.
    **{
        logical_id: "MiniStack has no EventBridge Schemas service (AWS::EventSchemas::Registry and ::Schema)"
        for logical_id in catalog_ids()
    },
}
# What the rehearsal deploys but the engine does not enforce or do as AWS does: read it as no more than it is.
NOT_ENFORCED: Final = (
    "request models, request validators and gateway responses of a REST API imported from SAM "
    "(the functions' own field errors answer instead)",
    "the EventBridge target that writes the audit log group, and rule targets' retry policies and DLQs",
    "TimeoutSecondsPath and heartbeats of the approval waits (escalation and expiry are not rehearsed)",
    "a task token as a lock: concurrent SendTaskSuccess calls on one token may all be accepted",
    "IAM, KMS and resource policies (every call is allowed; nothing is encrypted)",
    "arm64 (functions run on the host's interpreter and architecture)",
    "a retained resource blocking a stack created again under the same name (MiniStack replaces it)",
    "MaximumBatchingWindowInSeconds of the SQS event source mappings",
)


@dataclass(frozen=True)
class RehearsalCopy:
    path: Path
    left_out: dict[str, str]  # logical id -> why


def engine_gaps(template: Mapping[str, Any], engine: EngineCapabilities) -> set[str]:
    """The resources of the template the engine cannot create, by its own account. The engine applies
    the SAM transform itself: what it must create is what the transform makes of the template."""
    gaps = set()
    translated = translate(copy.deepcopy(dict(template)))
    for logical_id, resource in translated["Resources"].items():
        kind = resource["Type"]
        metric_math = kind == "AWS::CloudWatch::Alarm" and "Metrics" in resource.get("Properties", {})
        if (kind not in engine.resource_types and not kind.startswith("Custom::")) or (
            metric_math and not engine.metric_math_alarms
        ):
            gaps.add(logical_id)
    return gaps


def without(template: dict[str, Any], left_out: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The template without those resources and whatever refers to them, transitively."""
    removed = dict(left_out)
    resources = dict(template["Resources"])
    outputs = dict(template.get("Outputs", {}))
    changed = True
    while changed:
        changed = False
        for logical_id in list(resources):
            if logical_id in removed:
                del resources[logical_id]
                changed = True
            elif referred := referenced_ids(resources[logical_id]) & removed.keys():
                removed[logical_id] = f"refers to {sorted(referred)}"
                changed = True
    for name in list(outputs):
        if referenced_ids(outputs[name]) & removed.keys():
            del outputs[name]
            removed[f"Outputs.{name}"] = "refers to a resource left out"
    return {**template, "Resources": resources, "Outputs": outputs}, removed


def rehearsal_copy(built: Path, engine: EngineCapabilities) -> RehearsalCopy:
    """Next to the built template (its paths are relative to it), as JSON."""
    template, problems = decode(str(built))
    if template is None or problems:
        raise ValueError(f"{built} cannot be read: {problems}")
    gaps = engine_gaps(template, engine)
    if gaps != set(NOT_REHEARSED):
        raise ValueError(
            "the engine's gaps no longer match NOT_REHEARSED in carebus_tooling/rehearsal_template.py: "
            f"it cannot create {sorted(gaps)}, the list names {sorted(NOT_REHEARSED)}"
        )
    copy, removed = without(dict(template), NOT_REHEARSED)
    path = built.with_name("rehearsal-template.json")
    path.write_text(json.dumps(copy, indent=1))
    return RehearsalCopy(path, removed)
