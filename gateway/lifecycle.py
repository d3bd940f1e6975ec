"""Whether the process is starting, serving or draining; readiness reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lifecycle:
    stopping: bool = False
