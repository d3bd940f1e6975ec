"""Background tasks with names, so readiness can tell which one stopped and why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Workers:
    """Holds strong references to long-running tasks and logs any that die."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if name in self._tasks and not self._tasks[name].done():
            raise RuntimeError(f"worker {name!r} is already running")
        task = asyncio.create_task(run(), name=name)
        task.add_done_callback(self._on_done)
        self._tasks[name] = task

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("worker %s crashed", task.get_name(), exc_info=exc)
        else:
            log.warning("worker %s stopped", task.get_name())

    def status(self) -> dict[str, bool]:
        """Name → running, for /readyz."""
        return {name: not task.done() for name, task in self._tasks.items()}

    async def stop(self, name: str | None = None) -> None:
        names = [name] if name else list(self._tasks)
        tasks = [self._tasks.pop(n) for n in names if n in self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
