"""docs/partner-openapi.yaml, generated: the partner API (v1) from the partner contract (carebus.partner).

The partner API is a REST API and stage of its own, versioned apart from the staff API
(docs/api.md, "Partner API"), so it has a description of its own. `make contract` rewrites the file; a
test fails when it and this generator disagree.
"""

import json
from typing import Any, Final

import yaml

from carebus.partner import (
    CLAIM_ID_PATTERN,
    DEFAULT_PAGE_SIZE,
    LOOKBACK_DAYS,
    MAX_PAGE_SIZE,
    ClaimsPage,
    ClaimsQuery,
)
from carebus_local.template import PROJECT_ROOT
from carebus_tooling.openapi import problem_schema

PARTNER_OPENAPI_PATH: Final = PROJECT_ROOT / "docs" / "partner-openapi.yaml"
PARTNER_SCOPE: Final = "carebus-partner/claims.read"
_PROBLEM: Final = {"$ref": "#/components/responses/Problem"}


def _problems(*statuses: str) -> dict[str, Any]:
    """Every partner route may also be refused by the gateway (401, 403, 429) or fail (500, 503)."""
    return {status: dict(_PROBLEM) for status in sorted({*statuses, "401", "403", "429", "500", "503"})}


def _query_parameters() -> list[dict[str, Any]]:
    schema = ClaimsQuery.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        description = field.pop("description", "")
        field.pop("title", None)
        if name == "since":
            field = {"type": "string", "format": "date-time"}
        elif name == "pageToken":
            field = {"type": "string", "minLength": 1, "maxLength": 2048}
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": description,
                "schema": field,
            }
        )
    return parameters


def _answer_schemas() -> dict[str, Any]:
    schema = ClaimsPage.model_json_schema(by_alias=True, mode="serialization")
    definitions = schema.pop("$defs", {})
    text = json.dumps({"ClaimsPage": schema, **definitions}).replace("#/$defs/", "#/components/schemas/")
    schemas = json.loads(text)
    schemas["Problem"] = problem_schema(
        "RFC 9457 problem details; field errors never echo what was sent.",
        field_example="since",
        code_example="since_too_old",
    )
    return schemas


def partner_openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "carebus partner API",
            "version": "1",
            "description": "For a clearinghouse or payer. Every request needs both an OAuth 2.0 access token "
            f"with the `{PARTNER_SCOPE}` scope (client credentials, from the stack's PartnerTokenUrl) in the "
            "Authorization header and the partner's API key in `x-api-key`; the key meters the partner "
            "(its usage plan's throttle and monthly quota answer 429) and never authorizes alone. Answers "
            "carry ids, codes and amounts, never patient demographics. Versioning: docs/api.md.",
        },
        "servers": [
            {
                "url": "https://{apiId}.execute-api.{region}.amazonaws.com/v1",
                "variables": {"apiId": {"default": "example"}, "region": {"default": "us-east-1"}},
            }
        ],
        "security": [{"PartnerAccessToken": [PARTNER_SCOPE], "PartnerApiKey": []}],
        "paths": {
            "/claims": {
                "get": {
                    "operationId": "listClaims",
                    "summary": "Claims submitted since a time, oldest first, a page at a time",
                    "description": f"`since` may reach {LOOKBACK_DAYS} days back; pages hold up to `limit` "
                    f"claims ({DEFAULT_PAGE_SIZE} unless given, at most {MAX_PAGE_SIZE}). A claim appears "
                    "here within seconds of its ClaimSubmitted event, not always in submittedAt order "
                    "(the index is eventually consistent): poll on with the last claim's submittedAt "
                    "minus five minutes as the next since, and keep claims by claimId.",
                    "parameters": _query_parameters(),
                    "responses": {
                        "200": {
                            "description": "One page",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ClaimsPage"}}
                            },
                        },
                        **_problems("400"),
                    },
                }
            },
            "/claims/{claimId}": {
                "get": {
                    "operationId": "getClaim",
                    "summary": "One claim, lines and totals included",
                    "parameters": [
                        {
                            "name": "claimId",
                            "in": "path",
                            "required": True,
                            "description": "An id that cannot exist is 404 before anything is read",
                            "schema": {"type": "string", "pattern": CLAIM_ID_PATTERN},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The claim",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/PartnerClaim"}}
                            },
                        },
                        **_problems("404"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "PartnerAccessToken": {
                    "type": "oauth2",
                    "description": "A Cognito access token from the client-credentials grant.",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "https://carebus-example.auth.us-east-1.amazoncognito.com/oauth2/token",
                            "scopes": {PARTNER_SCOPE: "Read submitted claims"},
                        }
                    },
                },
                "PartnerApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "The partner's API key: identifies it for its usage plan.",
                },
            },
            "responses": {
                "Problem": {
                    "description": "Problem details",
                    "content": {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    },
                }
            },
            "schemas": _answer_schemas(),
        },
    }


def render_partner_openapi() -> str:
    header = (
        "# Generated by `make contract` from local/carebus_tooling/partner_openapi.py and carebus.partner.\n"
    )
    return header + yaml.safe_dump(partner_openapi_document(), sort_keys=False, width=110)
