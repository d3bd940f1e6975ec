"""Segments: conditions over profiles, compiled to a parameterised SQL WHERE clause.

A segment is JSON: a condition, or ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``.
Conditions:

- ``{"tag": "vip"}`` — has the tag;
- ``{"field": "language", "op": "eq", "value": "fa"}`` — a profile field;
- ``{"attribute": "age", "op": "gte", "value": 18}`` — a custom attribute;
- ``{"activity": "last_inbound_at", "op": "after", "value": "2026-01-01"}``.

Operators: eq, ne, in, gt, gte, lt, lte, exists, missing, before, after.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import BadRequest

_FIELDS = {"first_name", "last_name", "email", "language", "time_zone", "phone",
           "created_at", "updated_at"}
_ACTIVITY = {"last_inbound_at", "last_outbound_at", "created_at", "updated_at"}
_COMPARE = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
            "before": "<", "after": ">"}
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_DEPTH = 8


def compile_segment(segment: Any, path: str = "segment", depth: int = 0
                    ) -> tuple[str, list[Any]]:
    """(where, params) for `segment`; raises BadRequest naming the faulty part."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"{path}: nested deeper than {MAX_DEPTH}")
    if not isinstance(segment, dict) or not segment:
        raise BadRequest(f"{path}: expected a condition object")
    for combinator, joiner in (("all", " AND "), ("any", " OR ")):
        if combinator in segment:
            parts = segment[combinator]
            if not isinstance(parts, list) or not parts:
                raise BadRequest(f"{path}.{combinator}: expected a non-empty array")
            compiled = [compile_segment(p, f"{path}.{combinator}[{i}]", depth + 1)
                        for i, p in enumerate(parts)]
            return ("(" + joiner.join(c[0] for c in compiled) + ")",
                    [v for c in compiled for v in c[1]])
    if "not" in segment:
        where, params = compile_segment(segment["not"], f"{path}.not", depth + 1)
        return f"NOT ({where})", params
    if "tag" in segment:
        if not isinstance(segment["tag"], str):
            raise BadRequest(f"{path}.tag: expected a string")
        return "EXISTS (SELECT 1 FROM json_each(profiles.tags_json) WHERE value = ?)", [
            segment["tag"]]
    if "field" in segment:
        name = segment["field"]
        if name not in _FIELDS:
            raise BadRequest(f"{path}.field: {name!r} is not one of {sorted(_FIELDS)}")
        return _compare(f"profiles.{name}", segment, path)
    if "activity" in segment:
        name = segment["activity"]
        if name not in _ACTIVITY:
            raise BadRequest(f"{path}.activity: {name!r} is not one of {sorted(_ACTIVITY)}")
        return _compare(f"profiles.{name}", segment, path)
    if "attribute" in segment:
        name = segment["attribute"]
        if not isinstance(name, str) or not _ATTRIBUTE.match(name):
            raise BadRequest(f"{path}.attribute: not an attribute name")
        return _compare(f"json_extract(profiles.attributes_json, '$.{name}')", segment, path)
    raise BadRequest(f"{path}: expected one of all, any, not, tag, field, attribute, activity")


def _compare(expr: str, cond: dict[str, Any], path: str) -> tuple[str, list[Any]]:
    op = cond.get("op", "eq")
    if op not in _COMPARE and op not in ("in", "exists", "missing"):
        raise BadRequest(f"{path}.op: {op!r} is not one of "
                         f"{sorted([*_COMPARE, 'in', 'exists', 'missing'])}")
    if op == "exists":
        return f"{expr} IS NOT NULL", []
    if op == "missing":
        return f"{expr} IS NULL", []
    if "value" not in cond:
        raise BadRequest(f"{path}.value: required with op {op!r}")
    value = cond["value"]
    if op == "in":
        if not isinstance(value, list) or not value:
            raise BadRequest(f"{path}.value: 'in' needs a non-empty array")
        return f"{expr} IN ({','.join('?' * len(value))})", list(value)
    if not isinstance(value, str | int | float | bool):
        raise BadRequest(f"{path}.value: expected a string, number or boolean")
    return f"{expr} {_COMPARE[op]} ?", [value]
