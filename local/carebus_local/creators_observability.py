"""Creators of the observability resources: what the stack shows operators (the dashboard)."""

from typing import TYPE_CHECKING, Any

from carebus_local.stack import Provisioned

if TYPE_CHECKING:
    from carebus_local.provision import Provisioner


def cloudwatch_dashboard(p: "Provisioner", logical_id: str, props: dict[str, Any]) -> Provisioned:
    # moto keeps the body as given (it checks neither widgets nor metrics): tests read it back with
    # GetDashboard, resolved as CloudFormation would have resolved it.
    name = props.get("DashboardName") or p.physical_name(logical_id, 255)
    p.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=props["DashboardBody"])
    return Provisioned(name)
