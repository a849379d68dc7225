"""Run `async def` tests on a fresh event loop, each under a timeout guard.

No plugin is needed: `pytest_pyfunc_call` runs coroutine tests with `asyncio.run`, wrapped
in `asyncio.timeout` (default 10 s; `@pytest.mark.async_timeout(s)` changes it), so a hung
test fails with a traceback instead of blocking CI. pytest-timeout is the outer guard.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

DEFAULT_ASYNC_TIMEOUT = 10.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    marker = pyfuncitem.get_closest_marker("async_timeout")
    seconds = float(marker.args[0]) if marker else DEFAULT_ASYNC_TIMEOUT
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}

    async def guarded() -> None:
        async with asyncio.timeout(seconds):
            await func(**kwargs)

    asyncio.run(guarded())
    return True
