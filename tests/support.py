"""Helpers shared by the test modules: driving the virtual clock and letting tasks run."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from telemetry_lab import VirtualTimeEventLoop

__all__ = ["settle", "vrun"]

T = TypeVar("T")


def vrun(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a fresh virtual-time loop, failing (not hanging) if it gets stuck."""

    async def guarded() -> T:
        async with asyncio.timeout(1_000):
            return await coro

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        return runner.run(guarded())


async def settle(n: int = 5) -> None:
    """Let every ready task run `n` rounds without advancing any timer."""
    for _ in range(n):
        await asyncio.sleep(0)
