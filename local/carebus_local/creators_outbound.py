"""Creators of the outbound partner integration: EventBridge connections and API destinations on moto.

moto keeps a connection's authorization parameters in a Secrets Manager secret of its own, as EventBridge
does; the offline delivery of API destination targets (carebus_local.api_destinations) reads it there.
"""

from typing import TYPE_CHECKING, Any

from carebus_local.stack import Provisioned

if TYPE_CHECKING:
    from carebus_local.creators import Creator
    from carebus_local.provision import Provisioner


def _for_policy(arn: str) -> str:
    """An ARN without the trailing id EventBridge appends to a connection's or destination's name."""
    return arn.rsplit("/", 1)[0]


def _connection(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("Name") or p.physical_name(logical_id, 64)
    client = p.client("events")
    arn = client.create_connection(
        Name=name,
        AuthorizationType=props["AuthorizationType"],
        AuthParameters=props["AuthParameters"],
        **({"Description": props["Description"]} if "Description" in props else {}),
    )["ConnectionArn"]
    secret_arn = client.describe_connection(Name=name)["SecretArn"]
    return Provisioned(name, {"Arn": arn, "ArnForPolicy": _for_policy(arn), "SecretArn": secret_arn})


def _api_destination(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    name = props.get("Name") or p.physical_name(logical_id, 64)
    request: dict[str, Any] = {
        "Name": name,
        "ConnectionArn": props["ConnectionArn"],
        "InvocationEndpoint": props["InvocationEndpoint"],
        "HttpMethod": props["HttpMethod"],
    }
    if "Description" in props:
        request["Description"] = props["Description"]
    if "InvocationRateLimitPerSecond" in props:
        request["InvocationRateLimitPerSecond"] = int(props["InvocationRateLimitPerSecond"])
    arn = p.client("events").create_api_destination(**request)["ApiDestinationArn"]
    return Provisioned(name, {"Arn": arn, "ArnForPolicy": _for_policy(arn)})


OUTBOUND_CREATORS: dict[str, "Creator"] = {
    "AWS::Events::Connection": _connection,
    "AWS::Events::ApiDestination": _api_destination,
}
