"""Which resources a template value refers to, as CloudFormation reads it."""

from typing import Any


def referenced_ids(value: Any) -> set[str]:
    """The logical ids a value refers to (Ref, Fn::GetAtt, ${...} in Fn::Sub, DependsOn)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else str(item).split(".", 1)[0])
            elif key == "DependsOn":
                found |= set(item if isinstance(item, list) else [item])
            found |= referenced_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_ids(item)
    elif isinstance(value, str):
        found |= {part.split("}", 1)[0].split(".", 1)[0] for part in value.split("${")[1:]}
    return found
