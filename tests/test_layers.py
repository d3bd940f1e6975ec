"""handlers/, campaigns/, consent/ and the outbound pipeline never pull in aiohttp or the HTTP
layer: they take plain data and return decisions, so they run anywhere (CLI, workers)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("aiohttp", "gateway.http", "gateway.app", "gateway.keys")


@pytest.mark.parametrize("package", ["handlers.inbound", "handlers.conversations",
                                     "handlers.keywords", "handlers.router", "consent",
                                     "campaigns", "campaigns.service", "campaigns.pull",
                                     "campaigns.runner", "gateway.outbound"])
def test_no_http_below_the_edge(package: str) -> None:
    probe = (f"import sys, {package}\n"
             f"bad = sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'"
             f" or any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r}[1:]))\n"
             f"print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "", f"{package} imports {result.stdout.strip()}"
