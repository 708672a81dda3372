"""template.yaml as CloudFormation: parsed with its short-form tags and translated by samtranslator."""

import copy
import logging
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
# Where SAM resources keep the local folder that `sam build` packages; the translator wants S3 URIs there.
_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
_LOCAL_CODE_BUCKET = "carebus-local-code"


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt, !Sub, ...) read as their long forms."""


def _short_form(loader: _TemplateLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


_TemplateLoader.add_multi_constructor("!", _short_form)
# CloudFormation reads yes/no/on/off as strings; YAML 1.1 would turn them into booleans.
_TemplateLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in _TemplateLoader.yaml_implicit_resolvers.items()
}


def _bool_resolver() -> None:
    import re

    _TemplateLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )


_bool_resolver()


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The SAM template as written, short-form tags expanded."""
    with path.open() as stream:
        return yaml.load(stream, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader subclass


def code_locations(sam_template: dict[str, Any], base: Path = PROJECT_ROOT) -> dict[str, Path]:
    """Each SAM function's and layer's local code folder, by logical id."""
    locations = {}
    for logical_id, resource in sam_template.get("Resources", {}).items():
        code_property = _CODE_PROPERTIES.get(resource.get("Type"))
        if code_property and isinstance(resource["Properties"].get(code_property), str):
            locations[logical_id] = (base / resource["Properties"][code_property]).resolve()
    return locations


class _OfflinePolicyLoader:
    """samtranslator asks IAM for AWS-managed policy ARNs by name; carebus names none, so nothing to load."""

    def load(self) -> dict[str, str]:
        return {}


def translate(
    sam_template: dict[str, Any], parameters: dict[str, Any] | None = None, region: str = "us-east-1"
) -> dict[str, Any]:
    """The CloudFormation template that the SAM transform makes of a SAM template, offline."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # samtranslator logs its feature-toggle lookups at WARNING on every translation: routine, not news.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    packaged = copy.deepcopy(sam_template)
    for logical_id, resource in packaged.get("Resources", {}).items():
        code_property = _CODE_PROPERTIES.get(resource.get("Type"))
        if code_property and isinstance(resource["Properties"].get(code_property), str):
            resource["Properties"][code_property] = f"s3://{_LOCAL_CODE_BUCKET}/{logical_id}.zip"
    # The translator only asks the session for its region (to fill AWS::Region and AWS::Partition).
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    return translator.translate(
        packaged, parameter_values=dict(parameters or {}), get_managed_policy_map=_OfflinePolicyLoader().load
    )
