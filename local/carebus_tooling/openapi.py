"""docs/openapi.yaml, generated: paths and answers written here, request schemas from the domain models.

`make openapi` rewrites the file; a test fails when the file and this generator disagree.
"""

import json
from typing import Any

import yaml

from carebus.approvals import ApprovalStatus, DecisionRequest
from carebus.models import EncounterRequest
from carebus.submission import IdempotencyHeader
from carebus_local.template import PROJECT_ROOT

OPENAPI_PATH = PROJECT_ROOT / "docs" / "openapi.yaml"
_PROBLEM = {"$ref": "#/components/responses/Problem"}
_APPROVAL_STATUSES = [status.value for status in ApprovalStatus]
_APPROVAL_ID = {"name": "approvalId", "in": "path", "required": True, "schema": {"type": "string"}}


def _problems(*statuses: str) -> dict[str, Any]:
    """Problem answers of a route: the ones it names, and the 500 and 503 every route may give."""
    return {status: _PROBLEM for status in (*statuses, "500", "503")}


def _idempotency_key_schema() -> dict[str, Any]:
    schema = IdempotencyHeader.model_json_schema(by_alias=True)["properties"]["Idempotency-Key"]
    return {name: value for name, value in schema.items() if name != "title"}


def _components_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (EncounterRequest, DecisionRequest):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        definitions = schema.pop("$defs", {})
        text = json.dumps({model.__name__: schema, **definitions}).replace(
            "#/$defs/", "#/components/schemas/"
        )
        schemas |= json.loads(text)
    schemas["Approval"] = {
        "type": "object",
        "description": "What a pharmacist needs to decide; never the workflow's task token.",
        "required": ["approvalId", "status"],
        "properties": {
            "approvalId": {"type": "string"},
            "status": {"enum": list(_APPROVAL_STATUSES)},
            "escalated": {"type": "boolean"},
            "prescriptionId": {"type": "string"},
            "encounterId": {"type": "string", "format": "uuid"},
            "drug": {"type": "string"},
            "deaSchedule": {"enum": ["II", "III", "IV", "V"]},
            "quantity": {"type": "integer"},
            "refills": {"type": "integer"},
            "prescriberNpi": {"type": "string"},
            "requestedAt": {"type": "string", "format": "date-time"},
            "expiresAt": {"type": "string", "format": "date-time"},
            "decision": {"enum": ["APPROVE", "REJECT"]},
            "decidedBy": {"type": "string"},
            "decidedAt": {"type": "string", "format": "date-time"},
            "reason": {"type": "string"},
            "failedAt": {"type": "string", "format": "date-time"},
        },
    }
    schemas["Problem"] = {
        "type": "object",
        "description": "RFC 9457 problem details. The functions' field errors never echo submitted values; "
        "API Gateway's model check (detail only) may quote a refused value back to its sender.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message", "code"],
                    "properties": {
                        "field": {"type": "string", "examples": ["procedures[0].code"]},
                        "message": {"type": "string"},
                        "code": {"type": "string", "examples": ["invalid_cpt"]},
                    },
                },
            },
            "current": {"type": "object", "description": "On a 409: the resource as it now stands."},
        },
    }
    schemas["Accepted"] = {
        "type": "object",
        "required": ["encounterId", "status", "location"],
        "properties": {
            "encounterId": {"type": "string", "format": "uuid"},
            "status": {"const": "ACCEPTED"},
            "location": {"type": "string"},
        },
    }
    schemas["EncounterState"] = {
        "type": "object",
        "description": "The downstream state; a pharmacist who did not submit the encounter sees "
        "encounterId and prescriptions only.",
        "required": ["encounterId", "prescriptions"],
        "properties": {
            "encounterId": {"type": "string", "format": "uuid"},
            "status": {"enum": ["ACCEPTED", "PUBLISHED"]},
            "submittedAt": {"type": "string", "format": "date-time"},
            "expected": {
                "type": "object",
                "properties": {
                    "claim": {"type": "boolean"},
                    "appointment": {"type": "boolean"},
                    "prescriptions": {"type": "integer"},
                },
            },
            "claim": {"type": ["object", "null"]},
            "appointment": {"type": ["object", "null"]},
            "prescriptions": {"type": "array", "items": {"type": "object"}},
        },
    }
    return schemas


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "carebus API",
            "version": "1",
            "description": "Every route needs a Cognito ID token in the Authorization header. "
            "Errors are application/problem+json.",
        },
        "servers": [
            {
                "url": "https://{apiId}.execute-api.{region}.amazonaws.com/v1",
                "variables": {"apiId": {"default": "example"}, "region": {"default": "us-east-1"}},
            }
        ],
        "security": [{"CognitoIdToken": []}],
        "paths": {
            "/encounters": {
                "post": {
                    "summary": "Submit an encounter (physicians)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": True,
                            "description": "One per encounter, sent again on every retry. Same key and body: "
                            "the first answer again; other body: 409.",
                            "schema": _idempotency_key_schema(),
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/EncounterRequest"}}
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Stored, and its fan-out happened",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                            },
                        },
                        **_problems("400", "401", "403", "409", "413", "415"),
                    },
                }
            },
            "/encounters/{encounterId}": {
                "get": {
                    "summary": "Where an encounter got to (its physician; pharmacists see prescriptions)",
                    "parameters": [
                        {"name": "encounterId", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "The downstream state",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/EncounterState"}
                                }
                            },
                        },
                        **_problems("401", "403", "404"),
                    },
                }
            },
            "/approvals": {
                "get": {
                    "summary": "Approvals by status, oldest request first (pharmacists)",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "enum": list(_APPROVAL_STATUSES),
                                "default": "PENDING",
                            },
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The approvals",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "approvals": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Approval"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        **_problems("400", "401", "403"),
                    },
                }
            },
            "/approvals/{approvalId}": {
                "get": {
                    "summary": "One approval (pharmacists)",
                    "parameters": [_APPROVAL_ID],
                    "responses": {
                        "200": {
                            "description": "The approval",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Approval"}}
                            },
                        },
                        **_problems("401", "403", "404"),
                    },
                }
            },
            "/approvals/{approvalId}/decision": {
                "post": {
                    "summary": "Approve or reject (pharmacists; never one's own prescription)",
                    "parameters": [_APPROVAL_ID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/DecisionRequest"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The workflow took this decision (sending it again is safe)",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Approval"}}
                            },
                        },
                        "409": {
                            "description": "Decided otherwise, expired or failed, not yet decidable, or its "
                            "wait ended first: the problem's `current` member is the approval as it stands",
                            "content": {
                                "application/problem+json": {
                                    "schema": {"$ref": "#/components/schemas/Problem"}
                                }
                            },
                        },
                        **_problems("400", "401", "403", "404", "415"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "CognitoIdToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "A Cognito user pool ID token (API Gateway's Cognito authorizer).",
                }
            },
            "responses": {
                "Problem": {
                    "description": "Problem details",
                    "content": {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    },
                }
            },
            "schemas": _components_schemas(),
        },
    }


def render() -> str:
    header = "# Generated by `make openapi` from local/carebus_tooling/openapi.py and the domain models.\n"
    return header + yaml.safe_dump(openapi_document(), sort_keys=False, width=110)


def main() -> None:
    OPENAPI_PATH.write_text(render())


if __name__ == "__main__":
    main()
