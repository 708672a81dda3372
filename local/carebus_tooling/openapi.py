"""docs/openapi.yaml, generated: paths and answers written here, request schemas from the domain models.

`make contract` rewrites the file (carebus_tooling.contract); a test fails when it and this generator
disagree. Links between operations say where an id comes from, so a stateful client (or fuzzer) can follow
them: an accepted encounter to its state, an approval in the list to its decision.
"""

import json
from typing import Any

import yaml

from carebus.approvals import APPROVAL_ID_PATTERN, ApprovalStatus, DecisionRequest
from carebus.messages import ENCOUNTER_ID_PATTERN
from carebus.models import FUNCTION_ONLY_RULES, EncounterRequest
from carebus.submission import IdempotencyHeader
from carebus_local.template import PROJECT_ROOT

OPENAPI_PATH = PROJECT_ROOT / "docs" / "openapi.yaml"
_PROBLEM = {"$ref": "#/components/responses/Problem"}
_APPROVAL_STATUSES = [status.value for status in ApprovalStatus]
_APPROVAL_ID = {
    "name": "approvalId",
    "in": "path",
    "required": True,
    "description": "An id that cannot exist is 404 before anything is read",
    "schema": {"type": "string", "pattern": APPROVAL_ID_PATTERN},
}
_ENCOUNTER_ID = {
    "name": "encounterId",
    "in": "path",
    "required": True,
    "description": "An id that cannot exist is 404 before anything is read",
    "schema": {"type": "string", "format": "uuid", "pattern": ENCOUNTER_ID_PATTERN},
}


def _problems(*statuses: str) -> dict[str, Any]:
    """Problem answers of a route: the ones it names, and the 500 and 503 every route may give."""
    return {status: _PROBLEM for status in (*statuses, "500", "503")}


def _idempotency_key_schema() -> dict[str, Any]:
    schema = IdempotencyHeader.model_json_schema(by_alias=True)["properties"]["Idempotency-Key"]
    return {name: value for name, value in schema.items() if name != "title"}


def problem_schema(description: str, *, field_example: str, code_example: str) -> dict[str, Any]:
    """The problem details every answer of an error is (carebus.problems), as a description shows them."""
    return {
        "type": "object",
        "description": description,
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
                        "field": {"type": "string", "examples": [field_example]},
                        "message": {"type": "string"},
                        "code": {"type": "string", "examples": [code_example]},
                    },
                },
            },
        },
    }


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
    schemas["Problem"] = problem_schema(
        "RFC 9457 problem details. Field errors never echo submitted values; a body the gateway's model "
        "check refused is one error at the field `body` (code `gateway_model`).",
        field_example="procedures[0].code",
        code_example="invalid_cpt",
    )
    schemas["Problem"]["properties"]["current"] = {
        "type": "object",
        "description": "On a 409: the resource as it now stands.",
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
            "description": "Every route needs a Cognito ID token in the Authorization header. Bodies are "
            "`application/json` (UTF-8), anything else is 415; values are taken as sent, with strict types "
            "(an integer is a JSON integer). Errors are application/problem+json. A request this description "
            "allows is refused only for a rule the function alone applies, by its error code:\n\n"
            + "".join(f"- `{code}`: {rule}\n" for code, rule in FUNCTION_ONLY_RULES.items()),
        },
        "x-function-only-rules": dict(FUNCTION_ONLY_RULES),
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
                    "operationId": "submitEncounter",
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
                            "links": {
                                "EncounterState": {
                                    "operationId": "getEncounter",
                                    "parameters": {"encounterId": "$response.body#/encounterId"},
                                }
                            },
                        },
                        **_problems("400", "401", "403", "409", "413", "415"),
                    },
                }
            },
            "/encounters/{encounterId}": {
                "get": {
                    "operationId": "getEncounter",
                    "summary": "Where an encounter got to (its physician; pharmacists see prescriptions)",
                    "parameters": [_ENCOUNTER_ID],
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
                    "operationId": "listApprovals",
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
                            "links": {
                                "OldestApproval": {
                                    "operationId": "getApproval",
                                    "parameters": {"approvalId": "$response.body#/approvals/0/approvalId"},
                                },
                                "DecideOldestApproval": {
                                    "operationId": "decideApproval",
                                    "parameters": {"approvalId": "$response.body#/approvals/0/approvalId"},
                                },
                            },
                        },
                        **_problems("400", "401", "403"),
                    },
                }
            },
            "/approvals/{approvalId}": {
                "get": {
                    "operationId": "getApproval",
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
                    "operationId": "decideApproval",
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


def render_openapi() -> str:
    header = "# Generated by `make contract` from local/carebus_tooling/openapi.py and the domain models.\n"
    return header + yaml.safe_dump(openapi_document(), sort_keys=False, width=110)
