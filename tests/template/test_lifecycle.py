"""What happens to the stack's resources across its life: deleted, kept, created again."""

import json


def test_a_resource_kept_after_the_stack_is_deleted_is_named_for_its_stack_instance(cfn):
    """A retained resource with a name of the template's choosing would block creating the stack again
    under the same name ("already exists"); its name must carry the stack's own id."""
    name_properties = ("LogGroupName", "TableName", "QueueName", "TopicName", "BucketName", "KeyAlias")
    clashing = {
        logical_id: name
        for logical_id, resource in cfn["Resources"].items()
        if resource.get("DeletionPolicy") == "Retain"
        for prop, name in resource.get("Properties", {}).items()
        if prop in name_properties and "AWS::StackId" not in json.dumps(name)
    }

    assert clashing == {}
