"""The primitives' generics have the right variance: mypy rejects unsound programs.

A `BroadcastSender[T]` was contravariant, so a sender of `object` passed for a sender of
`int`, and its `subscribe()` then handed out a receiver "of int" that receives a `str`.
These tests run mypy --strict on small programs, as a user's type checker would.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.timeout(300)


def mypy_errors(tmp_path: Path, source: str) -> list[str]:
    """Type-check `source` with mypy --strict; return its error lines."""
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(source))
    stdout, _, _ = api.run(["--strict", "--cache-dir", str(tmp_path / ".mypy_cache"), str(program)])
    return [line for line in stdout.splitlines() if ": error:" in line]


def test_a_broadcast_sender_of_object_is_not_a_sender_of_int(tmp_path: Path) -> None:
    errors = mypy_errors(
        tmp_path,
        """
        from telemetry_lab import BroadcastSender, broadcast

        async def listen(tx: BroadcastSender[int]) -> int:
            return await tx.subscribe().recv()

        async def main() -> None:
            tx, _ = broadcast[object](4)
            await listen(tx)  # would receive whatever object is sent, typed as int
        """,
    )
    assert len(errors) == 1, errors
    assert (
        'incompatible type "BroadcastSender[object]"; expected "BroadcastSender[int]"'
        in (errors[0])
    )


def test_receivers_stay_covariant_and_mpsc_senders_contravariant(tmp_path: Path) -> None:
    assert (
        mypy_errors(
            tmp_path,
            """
            from telemetry_lab import BroadcastReceiver, Sender, broadcast, channel

            async def read_any(rx: BroadcastReceiver[object]) -> object:
                return await rx.recv()

            async def send_int(tx: Sender[int]) -> None:
                await tx.send(1)

            async def main() -> None:
                btx, brx = broadcast[int](4)
                await read_any(brx)  # a receiver of int is a receiver of object
                tx, _ = channel[object](4)
                await send_int(tx)  # a sender that takes any object takes an int
                btx.close()
            """,
        )
        == []
    )
