"""The OpenAPI 3.1 description of the admin API; a test fails when a route is missing here."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, operation_id: str, ok: dict[str, Any], *, params: list[Any] | None = None,
        body: dict[str, Any] | None = None, errors: tuple[str, ...] = ("400",)
        ) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": operation_id,
                          "responses": {**ok, "401": _UNAUTHORIZED,
                                        **{code: _ERROR for code in errors}}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_PHONE = {"name": "phone", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "The customer's number, E.164 (URL-encode the +) or national form."}
_CURSOR = {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}}
_LIMIT = {"name": "limit", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
_PROFILE_BODY = {"required": True, "content": {"application/json": {
    "schema": _ref("ProfileChanges")}}}

PROFILE_PATHS: dict[str, Any] = {
    "/api/v1/profiles": {"get": _op(
        "Profiles, optionally in a segment, paginated", "listProfiles",
        {"200": _json({"type": "object", "properties": {
            "profiles": {"type": "array", "items": _ref("Profile")},
            "next_cursor": {"type": ["string", "null"]}}}, "A page of profiles")},
        params=[{"name": "segment", "in": "query", "required": False,
                 "schema": {"type": "string"},
                 "description": "JSON segment: {\"all\": [{\"tag\": \"vip\"}, "
                                "{\"attribute\": \"age\", \"op\": \"gte\", "
                                "\"value\": 18}]}"}, _CURSOR, _LIMIT])},
    "/api/v1/profiles/{phone}": {
        "get": _op("One profile", "getProfile",
                   {"200": _json(_ref("Profile"), "The profile")}, params=[_PHONE],
                   errors=("400", "404")),
        "put": _op("Replace a profile's fields, attributes and tags", "putProfile",
                   {"200": _json(_ref("Profile"), "The profile after the change")},
                   params=[_PHONE], body=_PROFILE_BODY),
        "patch": _op("Change the fields, attributes and tags the body names", "patchProfile",
                     {"200": _json(_ref("Profile"), "The profile after the change")},
                     params=[_PHONE], body=_PROFILE_BODY),
        "delete": _op("Erase a customer's personal data (keeps the suppression record)",
                      "eraseProfile", {"200": _json({"type": "object", "properties": {
                          "phone": {"type": "string"}, "erased": {"type": "boolean"},
                          "event_id": {"type": "string"}}}, "Erased")}, params=[_PHONE]),
    },
    "/api/v1/profiles/{phone}/timeline": {"get": _op(
        "Every event of a profile, oldest first", "getTimeline",
        {"200": _json({"type": "object", "properties": {
            "events": {"type": "array", "items": _ref("TimelineEvent")},
            "next_cursor": {"type": ["string", "null"]}}}, "A page of events")},
        params=[_PHONE, _CURSOR, _LIMIT], errors=("400", "404"))},
    "/api/v1/profiles/import": {"post": _op(
        "Import profiles from CSV or JSON Lines", "importProfiles",
        {"200": _json(_ref("ImportReport"), "What was imported")},
        params=[{"name": "format", "in": "query", "required": False,
                 "schema": {"enum": ["csv", "jsonl"]}},
                {"name": "map", "in": "query", "required": False,
                 "schema": {"type": "string"},
                 "description": "Column mapping: Mobile=phone,Age=attributes.age:integer"},
                {"name": "atomic", "in": "query", "required": False,
                 "schema": {"type": "boolean"},
                 "description": "All rows or nothing: one invalid row, nothing is written"}],
        body={"required": True, "content": {"text/csv": {"schema": {"type": "string"}},
                                            "application/x-ndjson": {
                                                "schema": {"type": "string"}}}},
        errors=("400", "413"))},
    "/api/v1/sync/status": {"get": _op(
        "CRM sync backlog, lag, last error and dead letters per endpoint", "getSyncStatus",
        {"200": _json({"type": "object", "properties": {"endpoints": {
            "type": "array", "items": _ref("SyncStatus")}}}, "Status")}, errors=())},
    "/api/v1/sync/dead-letters": {"get": _op(
        "Events given up on after sync.max_age_hours", "listDeadLetters",
        {"200": _json({"type": "object", "properties": {
            "dead_letters": {"type": "array", "items": {"type": "object"}},
            "next_cursor": {"type": ["string", "null"]}}}, "A page of dead letters")},
        params=[{"name": "endpoint", "in": "query", "required": False,
                 "schema": {"type": "string"}}, _CURSOR, _LIMIT])},
    "/api/v1/sync/dead-letters/replay": {"post": _op(
        "Queue dead letters for delivery again", "replayDeadLetters",
        {"200": _json({"type": "object", "properties": {"replayed": {"type": "integer"}}},
                      "How many were queued again")},
        body={"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {
                "endpoint": {"type": "string"},
                "ids": {"type": "array", "items": {"type": "integer"}}}}}}})},
}

CONSENT_PATHS: dict[str, Any] = {
    "/api/v1/consent/{phone}": {"get": _op(
        "Consent status per program and the full event history", "getConsent",
        {"200": _json({"type": "object", "properties": {
            "phone": {"type": "string"},
            "programs": {"type": "array", "items": {"type": "object"}},
            "history": {"type": "array", "items": _ref("ConsentEvent")}}}, "Consent")},
        params=[_PHONE])},
    "/api/v1/consent": {"post": _op(
        "Record an opt-in or opt-out captured elsewhere (web form, store counter)",
        "recordConsent", {"201": _json({"type": "object", "properties": {
            "event_id": {"type": "integer"}, "status": {"type": "string"},
            "queued_message_id": {"type": ["integer", "null"]}}}, "Recorded")},
        body={"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["phone", "program", "action"], "properties": {
                "phone": {"type": "string"}, "program": {"type": "string"},
                "action": {"enum": ["opt_in", "opt_out"]},
                "source": {"enum": ["keyword", "web_form", "api", "import", "carrier",
                                    "store"]},
                "evidence": {"type": "object",
                             "description": "Required for an opt-in: form_url, ip, "
                                            "user_agent, terms_shown, captured_at …"},
                "double_opt_in": {"type": "boolean"}}}}}})},
    "/api/v1/consent/export": {"get": _op(
        "The consent audit export, streamed", "exportConsent",
        {"200": {"description": "One line per ledger event", "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}}}}},
        params=[{"name": "program", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "since", "in": "query", "required": False,
                 "schema": {"type": "string", "format": "date-time"}},
                {"name": "format", "in": "query", "required": False,
                 "schema": {"enum": ["csv", "jsonl"]}}])},
    "/api/v1/consent/review/{id}": {"post": _op(
        "Resolve a doubtful message: record it as an opt-out, or dismiss it", "resolveReview",
        {"200": _json({"type": "object", "properties": {
            "id": {"type": "integer"}, "resolution": {"type": "string"},
            "consent_event_ids": {"type": "array", "items": {"type": "integer"}}}},
            "Resolved")},
        params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        body={"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["resolution"], "properties": {
                "resolution": {"enum": ["opt_out", "dismiss"]}}}}}},
        errors=("400", "404", "409"))},
    "/api/v1/consent/review": {"get": _op(
        "Doubtful messages that might be opt-outs, for a person to judge", "listReview",
        {"200": _json({"type": "object", "properties": {"review": {
            "type": "array", "items": {"type": "object"}}}}, "Open review items")},
        params=[_LIMIT])},
}

_STATUS = ["queued", "deferred", "sending", "sent", "delivered", "undelivered", "failed",
           "cancelled", "expired"]

MESSAGE_PATHS: dict[str, Any] = {
    "/api/v1/messages": {
        "post": _op(
            "Send a one-off message (consent is checked when it goes)", "sendMessage",
            {"202": _json(_ref("OutboundMessage"), "Queued")},
            body={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["to", "body", "program"], "properties": {
                    "to": {"type": "string"}, "body": {"type": "string", "maxLength": 1600},
                    "program": {"type": "string",
                                "description": "Its short code sends the message."},
                    "purpose": {"enum": ["transactional", "reply"],
                                "default": "transactional"},
                    "validity_seconds": {"type": "integer", "minimum": 1,
                                         "description": "Not sent after this (default: "
                                                        "outbound.validity_minutes)."},
                    "send_at": {"type": "string", "format": "date-time"}}}}}}),
        "get": _op(
            "The delivery log, newest first", "listMessages",
            {"200": _json({"type": "object", "properties": {
                "messages": {"type": "array", "items": _ref("OutboundMessage")},
                "next_cursor": {"type": ["string", "null"]}}}, "Messages")},
            params=[{"name": name, "in": "query", "required": False, "schema": schema}
                    for name, schema in (("phone", {"type": "string"}),
                                         ("campaign", {"type": "string"}),
                                         ("status", {"enum": _STATUS}),
                                         ("since", {"type": "string",
                                                    "format": "date-time"}))]
            + [_CURSOR, _LIMIT])},
    "/api/v1/messages/{id}": {"get": _op(
        "One message, with every pipeline event and provider receipt", "getMessage",
        {"200": _json({"allOf": [_ref("OutboundMessage"), {"type": "object", "properties": {
            "events": {"type": "array", "items": {"type": "object", "properties": {
                "at": {"type": "string"}, "event": {"type": "string"},
                "status": {"type": "string"}, "error_code": {"type": ["string", "null"]},
                "detail": {"type": "object"}}}},
            "receipts": {"type": "array", "items": {"type": "object"}}}}]}, "The message")},
        params=[{"name": "id", "in": "path", "required": True,
                 "schema": {"type": "integer"}}], errors=("400", "404"))},
    "/api/v1/queue": {"get": _op(
        "What waits to be sent per short code, and how long it takes at the current rate",
        "getQueue", {"200": _json({"type": "object", "properties": {"short_codes": {
            "type": "array", "items": {"type": "object", "properties": {
                "short_code": {"type": "string"}, "queued": {"type": "integer"},
                "deferred": {"type": "integer"}, "sending": {"type": "integer"},
                "awaiting_receipt": {"type": "integer"},
                "segments_waiting": {"type": "integer"},
                "segments_per_second": {"type": "number"},
                "drain_seconds": {"type": ["number", "null"]},
                "provider": {"type": "string"},
                "provider_state": {"enum": ["ok", "degraded", "down"]}}}}}}, "Queue")})},
}

PROFILE_SCHEMAS: dict[str, Any] = {
    "OutboundMessage": {"type": "object", "properties": {
        "id": {"type": "integer"}, "to": {"type": "string"}, "from": {"type": "string"},
        "body": {"type": "string"}, "status": {"enum": _STATUS},
        "reason": {"type": ["string", "null"],
                   "description": "Why deferred, cancelled or expired (quiet_hours, "
                                  "frequency_cap, opted_out, no_consent, validity …)"},
        "program": {"type": ["string", "null"]}, "purpose": {"type": ["string", "null"]},
        "campaign": {"type": ["string", "null"]},
        "encoding": {"enum": ["GSM-7", "UCS-2", None]},
        "segments": {"type": ["integer", "null"]}, "attempts": {"type": "integer"},
        "provider": {"type": ["string", "null"]},
        "provider_sid": {"type": ["string", "null"]},
        "error_code": {"type": ["string", "null"]},
        "error_message": {"type": ["string", "null"]}, "created_at": {"type": "string"},
        "sent_at": {"type": ["string", "null"]},
        "next_attempt_at": {"type": ["string", "null"]},
        "expires_at": {"type": ["string", "null"]},
        "consent_event_id": {"type": ["integer", "null"]},
        "in_reply_to": {"type": ["integer", "null"]}}},
    "ConsentEvent": {"type": "object", "properties": {
        "id": {"type": "integer"}, "phone": {"type": "string"}, "program": {"type": "string"},
        "kind": {"enum": ["opt_in_requested", "opt_in_confirmed", "opt_out", "re_opt_in",
                          "imported"]},
        "source": {"type": "string"}, "occurred_at": {"type": "string"},
        "inbound_sid": {"type": ["string", "null"]},
        "inbound_text": {"type": ["string", "null"]},
        "reply_text": {"type": ["string", "null"]}, "evidence": {"type": "object"}}},
    "Profile": {"type": "object", "properties": {
        "phone": {"type": "string"}, "first_name": {"type": ["string", "null"]},
        "last_name": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]},
        "language": {"type": ["string", "null"]}, "time_zone": {"type": ["string", "null"]},
        "derived_time_zones": {"type": "array", "items": {"type": "string"}},
        "attributes": {"type": "object"}, "tags": {"type": "array", "items": {"type": "string"}},
        "counters": {"type": "object"}, "last_inbound_at": {"type": ["string", "null"]},
        "consent": {"type": "object", "description": "Status per program: none, pending, "
                                                     "opted_in or opted_out"},
        "suppressed_since": {"type": ["string", "null"]},
        "last_outbound_at": {"type": ["string", "null"]}, "created_at": {"type": "string"},
        "updated_at": {"type": "string"}}},
    "ProfileChanges": {"type": "object", "properties": {
        "first_name": {"type": ["string", "null"]}, "last_name": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]}, "language": {"type": ["string", "null"]},
        "time_zone": {"type": ["string", "null"]}, "attributes": {"type": "object"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "add_tags": {"type": "array", "items": {"type": "string"}},
        "remove_tags": {"type": "array", "items": {"type": "string"}}}},
    "TimelineEvent": {"type": "object", "properties": {
        "event_id": {"type": "string"}, "sequence": {"type": "integer"},
        "type": {"type": "string"}, "occurred_at": {"type": "string"},
        "data": {"type": "object"}}},
    "ImportReport": {"type": "object", "properties": {
        "rows": {"type": "integer"}, "valid": {"type": "integer"},
        "invalid": {"type": "integer"}, "duplicates_merged": {"type": "integer"},
        "created": {"type": "integer"}, "updated": {"type": "integer"},
        "unchanged": {"type": "integer"}, "applied": {"type": "boolean"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "line": {"type": "integer"}, "message": {"type": "string"}}}}}},
    "SyncStatus": {"type": "object", "properties": {
        "endpoint": {"type": "string"}, "url": {"type": "string"},
        "backlog": {"type": "integer"}, "lag_seconds": {"type": "number"},
        "dead_letters": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
        "last_error_at": {"type": ["string", "null"]},
        "last_success_at": {"type": ["string", "null"]},
        "consecutive_failures": {"type": "integer"}}},
}

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

SPEC["paths"].update(PROFILE_PATHS)
SPEC["paths"].update(CONSENT_PATHS)
SPEC["paths"].update(MESSAGE_PATHS)
SPEC["components"]["schemas"].update(PROFILE_SCHEMAS)

_CAMPAIGN_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_CAMPAIGN_STATUS = ["draft", "scheduled", "running", "paused", "completed", "cancelled"]
_DEFINITION = {
    "type": "object", "required": ["name", "program"],
    "description": "A push campaign (template or variants, audience, schedule) or a pull "
                   "campaign (kind 'pull', keywords, window, outside_reply, join, "
                   "exhausted_reply; {code} in the template hands out a coupon code).",
    "properties": {
        "name": {"type": "string"}, "program": {"type": "string"},
        "kind": {"enum": ["push", "pull"], "default": "push"},
        "template": {"type": "string",
                     "description": "Placeholders {field} or {field|default}: first_name, "
                                    "last_name, email, language, time_zone, phone, "
                                    "attributes.NAME (and code in a pull campaign)."},
        "variants": {"type": "array", "minItems": 2, "items": {
            "type": "object", "required": ["name", "template", "percent"], "properties": {
                "name": {"type": "string"}, "template": {"type": "string"},
                "percent": {"type": "integer", "minimum": 1, "maximum": 99}}}},
        "audience": {"type": ["object", "null"],
                     "description": "A segment (as in GET /api/v1/profiles?segment=); always "
                                    "intersected with the program's opted-in numbers."},
        "schedule": {"type": ["object", "null"], "description":
                     "{\"now\": true} | {\"at\": date-time} | {\"cron\": \"0 10 * * MON\", "
                     "\"time_zone\": ..., \"until\": ...} | {\"local_time\": \"10:00\", "
                     "\"date\": \"YYYY-MM-DD\"} (each recipient's own time zone)"},
        "validity_minutes": {"type": "number"},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "starts_at": {"type": "string", "format": "date-time"},
        "ends_at": {"type": "string", "format": "date-time"},
        "outside_reply": {"type": "string"}, "exhausted_reply": {"type": "string"},
        "join": {"type": "boolean"}}}
_CAMPAIGN = {"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "kind": {"enum": ["push", "pull"]},
    "program": {"type": "string"}, "status": {"enum": _CAMPAIGN_STATUS},
    "next_run_at": {"type": ["string", "null"]}, "definition": _DEFINITION,
    "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}
_CAMPAIGN_OK = {"200": _json(_CAMPAIGN, "The campaign")}


def _action(summary: str, operation_id: str) -> dict[str, Any]:
    return {"post": _op(summary, operation_id, _CAMPAIGN_OK, params=[_CAMPAIGN_ID],
                        errors=("404", "409"))}


CAMPAIGN_PATHS: dict[str, Any] = {
    "/api/v1/campaigns": {
        "post": _op("Create a campaign (a draft)", "createCampaign",
                    {"201": _json(_CAMPAIGN, "Created")}, errors=("400", "409"),
                    body={"required": True, "content": {"application/json": {
                        "schema": _DEFINITION}}}),
        "get": _op("Campaigns, newest first", "listCampaigns", {"200": _json({
            "type": "object", "properties": {"campaigns": {"type": "array", "items": _CAMPAIGN},
                                             "next_cursor": {"type": ["string", "null"]}}},
            "Campaigns")}, params=[
                {"name": "status", "in": "query", "schema": {"enum": _CAMPAIGN_STATUS}},
                {"name": "kind", "in": "query", "schema": {"enum": ["push", "pull"]}},
                _CURSOR, _LIMIT])},
    "/api/v1/campaigns/{id}": {
        "get": _op("A campaign and its runs", "getCampaign", {"200": _json({"allOf": [
            _CAMPAIGN, {"type": "object", "properties": {"runs": {"type": "array", "items": {
                "type": "object", "properties": {
                    "id": {"type": "integer"}, "scheduled_for": {"type": "string"},
                    "status": {"enum": ["materialising", "queuing", "sending", "completed",
                                        "missed", "cancelled"]},
                    "audience": {"type": "integer"}}}}}}]}, "The campaign")},
                   params=[_CAMPAIGN_ID], errors=("404",)),
        "patch": _op("Change a draft (fields as in createCampaign)", "updateCampaign",
                     _CAMPAIGN_OK, params=[_CAMPAIGN_ID], errors=("400", "404", "409"),
                     body={"required": True, "content": {"application/json": {
                         "schema": {"type": "object"}}}})},
    "/api/v1/campaigns/{id}/preview": {"post": _op(
        "Audience size, encoding and segments per variant, a few rendered samples",
        "previewCampaign", {"200": _json({"type": "object"}, "Preview")},
        params=[_CAMPAIGN_ID], errors=("404",))},
    "/api/v1/campaigns/{id}/schedule": {"post": _op(
        "Schedule a draft (the body, if any, is the schedule)", "scheduleCampaign",
        _CAMPAIGN_OK, params=[_CAMPAIGN_ID], errors=("400", "404", "409"),
        body={"required": False, "content": {"application/json": {"schema": {
            "type": "object"}}}})},
    "/api/v1/campaigns/{id}/pause": _action("Pause: nothing more leaves from now on",
                                            "pauseCampaign"),
    "/api/v1/campaigns/{id}/resume": _action("Resume a paused campaign", "resumeCampaign"),
    "/api/v1/campaigns/{id}/cancel": _action("Cancel: what has not left never will",
                                             "cancelCampaign"),
    "/api/v1/campaigns/{id}/stats": {"get": _op(
        "Audience, skipped by reason, sent, delivered, failed by error code, replies and "
        "opt-outs (per variant); for a pull campaign hits, customers and codes",
        "getCampaignStats", {"200": _json({"type": "object"}, "Stats")},
        params=[_CAMPAIGN_ID], errors=("404",))},
    "/api/v1/campaigns/{id}/codes": {"post": _op(
        "Add coupon codes to a pull campaign's pool", "addCampaignCodes",
        {"200": _json({"type": "object"}, "Pool size")}, params=[_CAMPAIGN_ID],
        errors=("400", "404", "409"), body={"required": True, "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "codes": {"type": "array", "items": {"type": "string"}}}}}}})},
}
SPEC["paths"].update(CAMPAIGN_PATHS)


def _as_checked(spec: dict[str, Any]) -> None:
    """What the edge enforces for every parameter, said in the document: a query parameter
    is never empty (gateway.http.query), integers are ASCII digits from 1 within 64 bits
    (gateway.http.params.whole_number)."""
    for item in spec["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", ()):
                schema = param["schema"] = dict(param["schema"])
                if schema.get("type") == "string" and "enum" not in schema:
                    schema.setdefault("minLength", 1)
                if schema.get("type") == "integer":
                    schema.setdefault("minimum", 1)
                    schema.setdefault("maximum", 2**63 - 1)


_as_checked(SPEC)
