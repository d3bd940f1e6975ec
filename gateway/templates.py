"""Message templates with profile fields: ``Hi {first_name|there}``.

One syntax for keyword replies, conversations and campaigns: ``{field}`` or
``{field|default}``; a field is a profile field (``first_name``, ``last_name``, ``email``,
``language``, ``phone``) or an attribute (``attributes.city``, or just ``city``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.profiles import Profile

_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][\w.]*)(?:\|([^{}]*))?\}")


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill the placeholders; a missing or empty value takes its default (or nothing)."""

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2) or ""
        value = values.get(name)
        if value is None and name.startswith("attributes."):
            value = values.get(name.removeprefix("attributes."))
        return default if value in (None, "") else str(value)

    return _PLACEHOLDER.sub(fill, template)


def placeholders(template: str) -> list[str]:
    """The field names a template uses, in order."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def malformed(template: str) -> str | None:
    """The first ``{...}`` that is not a placeholder (a typo would otherwise be sent as is)."""
    stripped = _PLACEHOLDER.sub("", template)
    found = re.search(r"\{[^{}]*\}?|\}", stripped)
    return found.group(0) if found else None


def profile_values(profile: Profile | None, phone: str) -> dict[str, Any]:
    """What a template may use for one customer: attributes, then the profile's fields."""
    if profile is None:
        return {"phone": phone}
    return {**profile.attributes, **profile.to_dict(derived=False)}
