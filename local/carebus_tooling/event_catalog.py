"""The event catalog, generated from the event models (carebus.event_details) into the two places that
publish it:

- template.yaml's "Event catalog" section: an EventBridge schema registry with one JSON Schema (draft-04)
  per detail type, describing the whole event as a rule or a consumer receives it;
- docs/events.md: each event's source, detail type, emitter, consumers, fields, an example and its
  delivery guarantee.

Who emits an event is read from the code (the builder each function imports, the putEvents states of
each state machine the template declares) and who consumes it from the template's rules and archives,
so the catalog follows the code and the wiring; `make contract` (carebus_tooling.contract) writes both.
"""

import ast
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from cfnlint.decode.cfn_yaml import loads

from carebus.event_details import EVENT_DETAILS, EventDetail
from carebus_local.template import PROJECT_ROOT, code_locations
from carebus_tooling.draft04 import DRAFT_04, draft_04
from carebus_tooling.references import referenced_ids

SCHEMA_TYPE: Final = "JSONSchemaDraft4"
REGISTRY_ID: Final = "EventCatalogRegistry"
# What a published detail schema keeps of pydantic's annotations: what consumers and code bindings read.
_KEPT_ANNOTATIONS: Final = frozenset({"description", "format"})
_EVENTS_MODULE: Final = PROJECT_ROOT / "src" / "carebus" / "events.py"
_BANNER: Final = "  # " + "=" * 99 + "\n"
_SECTION_HEADER: Final = _BANNER + "  # Event catalog\n" + _BANNER
# The section runs from its banner to the next section's banner.
_SECTION: Final = re.compile(re.escape(_SECTION_HEADER) + r"(?:(?!" + re.escape(_BANNER) + r").*\n)*")
_NEXT_SECTION: Final = _BANNER + "  # Approval\n" + _BANNER
# Every field of an EventBridge event around its detail, as every rule target receives it.
_ENVELOPE: Final[Mapping[str, dict[str, Any]]] = {
    "version": {"type": "string"},
    "id": {"type": "string", "description": "EventBridge's id of this delivery, new on every put."},
    "detail-type": {},
    "source": {},
    "account": {"type": "string"},
    "time": {"type": "string", "format": "date-time"},
    "region": {"type": "string"},
    "resources": {"type": "array", "items": {"type": "string"}},
    "detail": {},
}


class CatalogError(ValueError):
    """The code, the models and the template disagree about an event: say which, and where."""


def schema_id(model: type[EventDetail]) -> str:
    """The logical id of a detail type's schema in template.yaml."""
    return f"{model.detail_type}EventSchema"


def schema_name(source: str, detail_type: str) -> str:
    """A schema's name in the registry: the form EventBridge's schema discovery gives an event's schema."""
    return f"{source}@{detail_type}"


def catalog_ids() -> tuple[str, ...]:
    """The logical ids of the catalog's resources: the registry and one schema per detail type."""
    return (REGISTRY_ID, *(schema_id(model) for model in EVENT_DETAILS))


def detail_schema(model: type[EventDetail]) -> dict[str, Any]:
    """The detail as emitted: every field present, no other field, described."""
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    converted = draft_04(schema, annotations=_KEPT_ANNOTATIONS)
    converted.pop("description", None)
    return converted


def event_schema(model: type[EventDetail]) -> dict[str, Any]:
    """The whole event a consumer receives, its detail from the model; what the registry publishes."""
    properties = {name: dict(schema) for name, schema in _ENVELOPE.items()}
    properties["source"] = {"enum": [model.source]}
    properties["detail-type"] = {"enum": [model.detail_type]}
    properties["detail"] = detail_schema(model)
    return {
        "$schema": DRAFT_04,
        "title": model.detail_type,
        "description": summary(model),
        "type": "object",
        # What carebus states is required; the rest of the envelope is EventBridge's, typed for code
        # bindings. Open at the top: EventBridge adds fields of its own (a replay adds replay-name).
        "required": ["source", "detail-type", "detail"],
        "properties": properties,
    }


def summary(model: type[EventDetail]) -> str:
    """The model's docstring on one line: the schema's description (at most 256 characters)."""
    text = " ".join((model.__doc__ or "").split())
    if not text or len(text) > 256:
        raise CatalogError(f"{model.detail_type}: its docstring must say what it states in 1-256 characters")
    return text


# ----- who emits what, read from the code ---------------------------------------------------------------
@dataclass(frozen=True)
class Emitter:
    logical_id: str
    where: str  # the file (and state) that puts the event


def _builders() -> dict[str, type[EventDetail]]:
    """carebus.events's builders by name, each with the detail model it builds through."""
    models = {model.__name__: model for model in EVENT_DETAILS}
    found: dict[str, type[EventDetail]] = {}
    for node in ast.parse(_EVENTS_MODULE.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            built = {
                inner.value.id
                for inner in ast.walk(node)
                if isinstance(inner, ast.Attribute)
                and inner.attr == "about"
                and isinstance(inner.value, ast.Name)
                and inner.value.id in models
            }
            if len(built) == 1:
                found[node.name] = models[built.pop()]
    return found


def _imported_builders(app: Path, builders: Mapping[str, type[EventDetail]]) -> set[str]:
    return {
        alias.name
        for node in ast.walk(ast.parse(app.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "carebus.events"
        for alias in node.names
        if alias.name in builders
    }


def _states(states: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])
        for nested in ("Iterator", "ItemProcessor"):
            if nested in state:
                yield from _states(state[nested]["States"])


def workflow_entries(definition: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every PutEvents entry a state machine definition writes, with the state that writes it."""
    for name, state in _states(definition["States"]):
        if str(state.get("Resource", "")).endswith(":events:putEvents"):
            for entry in state["Parameters"]["Entries"]:
                yield name, entry


def emitters(template: Mapping[str, Any], root: Path = PROJECT_ROOT) -> dict[str, list[Emitter]]:
    """Who puts each detail type on the bus: functions through the builders, workflows in their states."""
    builders = _builders()
    found: dict[str, list[Emitter]] = {model.detail_type: [] for model in EVENT_DETAILS}
    resources = template["Resources"]
    for logical_id, code_dir in sorted(code_locations(dict(template), root).items()):
        handler = resources[logical_id]["Properties"].get("Handler")
        if not handler:
            continue
        app = code_dir / f"{handler.rsplit('.', 1)[0].replace('.', '/')}.py"
        for builder in sorted(_imported_builders(app, builders)):
            where = str(app.relative_to(root))
            found[builders[builder].detail_type].append(Emitter(logical_id, where))
    models = {model.detail_type: model for model in EVENT_DETAILS}
    for logical_id, resource in sorted(resources.items()):
        location = resource.get("Properties", {}).get("DefinitionS3Location")
        if resource["Type"] != "AWS::StepFunctions::StateMachine" or not isinstance(location, str):
            continue
        definition = json.loads((root / location).read_text())
        for state, entry in workflow_entries(definition):
            model = models.get(entry["DetailType"])
            if model is None or entry["Source"] != model.source:
                raise CatalogError(
                    f"{location} state {state} puts {entry['Source']} {entry['DetailType']}: "
                    "no event model in carebus.event_details has that source and detail type"
                )
            found[model.detail_type].append(Emitter(logical_id, f"{location}, state {state}"))
    if silent := [detail_type for detail_type, who in found.items() if not who]:
        raise CatalogError(f"nothing in the code emits {silent}: remove their models or emit them")
    return found


# ----- who consumes what, read from the template --------------------------------------------------------
@dataclass(frozen=True)
class Consumer:
    logical_id: str
    kind: str  # "rule" or "archive"
    pattern: str  # the event pattern, as compact JSON
    targets: tuple[str, ...]  # the resources a rule delivers to


def _value_matches(allowed: Any, value: str, owner: str) -> bool:
    if isinstance(allowed, str):
        return allowed == value
    if isinstance(allowed, dict) and set(allowed) == {"prefix"}:
        return value.startswith(allowed["prefix"])
    raise CatalogError(f"{owner}: the catalog reads exact values and prefixes only, not {allowed!r}")


def pattern_matches(pattern: Mapping[str, Any], source: str, detail_type: str, owner: str) -> bool:
    """Whether an event pattern over source and detail-type matches events of this source and type."""
    fields = {"source": source, "detail-type": detail_type}
    for key, allowed in pattern.items():
        if key not in fields:
            raise CatalogError(f"{owner}: the catalog reads patterns on source and detail-type, not {key!r}")
        if not any(_value_matches(item, fields[key], owner) for item in allowed):
            return False
    return True


def consumers(template: Mapping[str, Any]) -> dict[str, list[Consumer]]:
    """The rules (and archives) of the template that match each detail type."""
    resources = template["Resources"]
    found: dict[str, list[Consumer]] = {model.detail_type: [] for model in EVENT_DETAILS}
    for logical_id, resource in resources.items():
        kind = {"AWS::Events::Rule": "rule", "AWS::Events::Archive": "archive"}.get(resource["Type"])
        pattern = resource.get("Properties", {}).get("EventPattern")
        if kind is None or pattern is None:
            continue
        targets = tuple(
            sorted(
                name
                for target in resource["Properties"].get("Targets", [])
                for name in referenced_ids(target["Arn"])
                if name in resources
            )
        )
        compact = json.dumps(pattern, separators=(",", ":"))
        for model in EVENT_DETAILS:
            if pattern_matches(pattern, model.source, model.detail_type, logical_id):
                found[model.detail_type].append(Consumer(logical_id, kind, compact, targets))
    return found


# ----- template.yaml ------------------------------------------------------------------------------------
def _yaml_line(key: str, value: str, indent: int) -> str:
    text = yaml.safe_dump({key: value}, width=1_000_000, default_flow_style=False, allow_unicode=True)
    return " " * indent + text


def catalog_section(template: Mapping[str, Any]) -> str:
    """The template's Event catalog section, as generation writes it."""
    who = emitters(template)
    lines = [
        _SECTION_HEADER,
        "  # Generated by `make contract` from the event models (carebus.event_details): edit those.\n",
        "  # Where consumers find the shape of every carebus event (docs/events.md renders the same).\n",
        f"  {REGISTRY_ID}:\n",
        "    Type: AWS::EventSchemas::Registry\n",
        "    Properties:\n",
        "      RegistryName: !Sub ${AWS::StackName}-events\n",
        "      Description: The domain events carebus puts on its bus, one schema per detail type\n",
    ]
    for model in EVENT_DETAILS:
        content = json.dumps(event_schema(model), separators=(",", ":"), ensure_ascii=False)
        emitted_by = " and ".join(sorted({emitter.logical_id for emitter in who[model.detail_type]}))
        lines += [
            "\n",
            f"  # The shape of {model.detail_type}, which {emitted_by} puts on the bus.\n",
            f"  {schema_id(model)}:\n",
            "    Type: AWS::EventSchemas::Schema\n",
            "    Properties:\n",
            f"      RegistryName: !GetAtt {REGISTRY_ID}.RegistryName\n",
            f"      SchemaName: {schema_name(model.source, model.detail_type)}\n",
            f"      Type: {SCHEMA_TYPE}\n",
            _yaml_line("Description", summary(model), 6),
            _yaml_line("Content", content, 6),
        ]
    return "".join(lines) + "\n"


def render_template_catalog(text: str) -> str:
    """template.yaml with its Event catalog section as generation makes it, right before Approval."""
    template = loads(text)
    section = catalog_section(template)
    if _SECTION.search(text):
        return _SECTION.sub(lambda _: section, text, count=1)
    if text.count(_NEXT_SECTION) != 1:
        raise CatalogError("template.yaml must have one Approval section for the catalog to precede")
    return text.replace(_NEXT_SECTION, section + _NEXT_SECTION)
