"""The async test runner in conftest.py really runs coroutines and really times out."""

import asyncio
from pathlib import Path

import pytest


async def test_async_tests_run_on_a_loop() -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 42)
    assert await fut == 42


def test_a_hung_async_test_fails_with_timeout(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    async_timeout(seconds): x\n")
    pytester.makepyfile(
        """
        import asyncio, pytest

        @pytest.mark.async_timeout(0.05)
        async def test_hangs():
            await asyncio.Event().wait()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TimeoutError*"])
