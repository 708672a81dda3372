"""The rehearsal's copy of the built template: what the engine cannot create, and what refers to it."""

from carebus_tooling.engine import EngineCapabilities
from carebus_tooling.rehearsal_template import engine_gaps, without

TEMPLATE = {
    "Resources": {
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "b"}},
        "Archive": {
            "Type": "AWS::Events::Archive",
            "Properties": {"SourceArn": {"Fn::GetAtt": ["Bus", "Arn"]}},
        },
        "ArchiveWatcher": {"Type": "AWS::SQS::Queue", "DependsOn": "Archive", "Properties": {}},
        "Alarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {"Metrics": [{"Id": "m", "Expression": "1"}]},
        },
        "PlainAlarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors"}},
    },
    "Outputs": {
        "ArchiveName": {"Value": {"Fn::Sub": "${Archive}"}},
        "BusName": {"Value": {"Ref": "Bus"}},
    },
}
ENGINE = EngineCapabilities(
    frozenset({"AWS::Events::EventBus", "AWS::SQS::Queue", "AWS::CloudWatch::Alarm"}),
    metric_math_alarms=False,
)


def test_the_gaps_are_the_types_the_engine_lacks_and_its_unsupported_alarms():
    assert engine_gaps(TEMPLATE, ENGINE) == {"Archive", "Alarm"}


def test_an_engine_that_learnt_metric_math_has_one_gap_less():
    learnt = EngineCapabilities(ENGINE.resource_types, metric_math_alarms=True)

    assert engine_gaps(TEMPLATE, learnt) == {"Archive"}


def test_whatever_refers_to_a_resource_left_out_is_left_out_with_it():
    copy, removed = without(TEMPLATE, {"Archive": "no provisioner"})

    assert set(copy["Resources"]) == {"Bus", "Alarm", "PlainAlarm"}
    assert set(copy["Outputs"]) == {"BusName"}
    assert set(removed) == {"Archive", "ArchiveWatcher", "Outputs.ArchiveName"}
