"""The OpenAPI 3.1 description of the admin API; a test fails when a route is missing here."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mcrm-gateway admin API",
        "version": "1",
        "description": "Programs, messages, consent, campaigns and profiles of an mcrm-gateway."
                       " Every call needs `Authorization: Bearer <token>` (api.tokens).",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This description of the API",
                "operationId": "getOpenApi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document"),
                              "401": _UNAUTHORIZED},
            },
        },
        "/api/v1/programs": {
            "get": {
                "summary": "Configured short codes and programs",
                "operationId": "listPrograms",
                "responses": {
                    "200": _json({
                        "type": "object",
                        "required": ["short_codes", "programs"],
                        "properties": {
                            "short_codes": {"type": "array", "items": {
                                "$ref": "#/components/schemas/ShortCode"}},
                            "programs": {"type": "array", "items": {
                                "$ref": "#/components/schemas/Program"}},
                        },
                    }, "Short codes and programs from the configuration file"),
                    "401": _UNAUTHORIZED,
                },
            },
        },
        "/api/v1/sandbox/messages": {
            "get": {
                "summary": "Messages the sandbox provider has sent, newest first",
                "operationId": "listSandboxMessages",
                "parameters": [
                    {"name": "to", "in": "query", "required": False,
                     "schema": {"type": "string"}, "description": "Recipient (any format)."},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                "default": 50}},
                ],
                "responses": {
                    "200": _json({
                        "type": "object",
                        "required": ["messages"],
                        "properties": {"messages": {"type": "array", "items": {
                            "$ref": "#/components/schemas/SandboxMessage"}}},
                    }, "Messages"),
                    "400": _ERROR,
                    "401": _UNAUTHORIZED,
                    "404": _ERROR,
                },
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Error": _json({"$ref": "#/components/schemas/Error"}, "An error"),
            "Unauthorized": _json({"$ref": "#/components/schemas/Error"},
                                  "Missing or invalid bearer token"),
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }},
            },
            "ShortCode": {
                "type": "object",
                "required": ["code", "messages_per_second"],
                "properties": {"code": {"type": "string"},
                               "messages_per_second": {"type": "number"}},
            },
            "Program": {
                "type": "object",
                "required": ["id", "name", "short_code", "keywords", "help_text"],
                "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "short_code": {"type": "string"},
                    "keywords": {"type": "array", "items": {"type": "string"}},
                    "help_text": {"type": "string"}, "description": {"type": "string"},
                },
            },
            "SandboxMessage": {
                "type": "object",
                "properties": {
                    "sid": {"type": "string"}, "from_number": {"type": "string"},
                    "to_number": {"type": "string"}, "body": {"type": "string"},
                    "status": {"type": "string"},
                    "error_code": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                },
            },
        },
    },
}
