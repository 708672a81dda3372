"""Creators for the stack's event catalog (EventBridge schema registry), which moto does not implement.

The registry and its schemas exist in the offline stack only: each returns the attributes CloudFormation
gives it, and published_schemas() reads the schemas back as the stack published them, so offline tests
validate what the bus carries against the stack's own catalog.
"""

import json
from typing import TYPE_CHECKING, Any

from carebus_local.stack import OfflineStack, Provisioned

if TYPE_CHECKING:
    from carebus_local.creators import Creator
    from carebus_local.provision import Provisioner

SCHEMA_TYPE = "AWS::EventSchemas::Schema"


def _schema_registry(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("RegistryName") or p.physical_name(logical_id)
    arn = p.arn("schemas", f"registry/{name}")
    return Provisioned(arn, {"RegistryArn": arn, "RegistryName": name})


def _schema(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    if props["Type"] not in ("JSONSchemaDraft4", "OpenApi3"):
        raise ValueError(f"{logical_id}: EventBridge takes JSONSchemaDraft4 or OpenApi3, not {props['Type']}")
    json.loads(props["Content"])  # EventBridge refuses content that is not JSON; so does the offline stack
    name = props.get("SchemaName") or p.physical_name(logical_id, 385)
    arn = p.arn("schemas", f"schema/{props['RegistryName']}/{name}")
    # A new schema's first version is "1"; CloudFormation updates that change Content add versions.
    return Provisioned(arn, {"SchemaArn": arn, "SchemaName": name, "SchemaVersion": "1"})


CATALOG_CREATORS: dict[str, "Creator"] = {
    "AWS::EventSchemas::Registry": _schema_registry,
    SCHEMA_TYPE: _schema,
}


def published_schemas(stack: OfflineStack) -> dict[str, dict[str, Any]]:
    """Every schema the offline stack published, by its name in the registry (`<source>@<detail-type>`)."""
    return {
        stack.attribute(logical_id, "SchemaName"): json.loads(resource["Properties"]["Content"])
        for logical_id, resource in stack.created(SCHEMA_TYPE).items()
    }
