"""Share the helpers every primitive needs: loop binding, closing, names, unclosed warnings.

Waiting itself lives in `waiting.py` (the waiting core).

A primitive is *bound* to the loop of its first waiter, as asyncio's own `Queue` and `Lock`
are (`asyncio.mixins._LoopBoundMixin`): its waiters' futures belong to that loop, and
resolving them from another loop's task or another thread would never wake them. So an
operation that would create or wake a waiter checks the running loop first and raises a
clear `RuntimeError` before it changes anything. A primitive whose loop has been closed
may be bound again (one notebook, several `asyncio.run()` calls in a script).
"""

from __future__ import annotations

import asyncio
import warnings
from types import TracebackType
from typing import Self

__all__ = ["ClosingHandle", "LoopBinding", "check_name", "warn_unclosed"]


class LoopBinding:
    """The event loop a primitive's waiters belong to, checked before every wait or wake-up.

    Args:
        what: how error messages name the primitive ("channel", "Notify", ...).
    """

    __slots__ = ("loop", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, binding to it; raise if bound to another live loop.

        Call it where a waiter is created.
        """
        loop = asyncio.get_running_loop()
        bound = self.loop
        if bound is not loop:
            if bound is not None and not bound.is_closed():
                raise RuntimeError(self._message(bound, loop))
            self.loop = loop
        return loop

    def check(self) -> None:
        """Raise unless running in the bound loop (or unbound).

        Call it before waking waiters, so a misuse changes nothing.
        """
        bound = self.loop
        if bound is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not bound and not bound.is_closed():
            raise RuntimeError(self._message(bound, running))

    def _message(
        self, bound: asyncio.AbstractEventLoop, running: asyncio.AbstractEventLoop | None
    ) -> str:
        where = "outside any event loop" if running is None else f"from another loop {running!r}"
        return (
            f"this {self.what} is bound to the event loop {bound!r} (its waiters belong to "
            f"it), but it was used {where}; use it only from tasks of that loop, and hand "
            "values over from other threads with loop.call_soon_threadsafe()"
        )


def check_name(name: object) -> str | None:
    """Return a primitive's `name=` argument, refusing what is not a non-empty string."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")
    if not name.strip():
        raise ValueError(f"name must not be empty, got {name!r}")
    return name


def warn_unclosed(handle: object, consequence: str) -> None:
    """Warn that `handle` is being garbage-collected without `close()` (as AnyIO does).

    Called from `__del__`, only when it matters (values left unread, a task left waiting).
    `ResourceWarning` is hidden by default; `python -X dev` or `-W default` shows it.
    """
    warnings.warn(
        f"{type(handle).__name__} was garbage-collected without close(): {consequence}; "
        "close handles (or use `with`) when done with them",
        ResourceWarning,
        stacklevel=2,
        source=handle,
    )


class ClosingHandle:
    """Mixin: `with handle:` and `async with handle:` close the handle on exit.

    Closing a handle is the Python stand-in for Rust's drop; `close()` is synchronous and
    idempotent, so both context-manager forms simply call it. A handle garbage-collected
    unclosed while tasks still wait for it (they would wait forever) raises a
    `ResourceWarning`, as AnyIO's streams do; a handle that merely leaves values unread is
    not reported (they go with the channel, nobody waits).

    Handles can be weakly referenced: a resource keeps a weak set of its handles, so an
    observer (the console) can tell whether anybody is left to complete a wait.
    """

    __slots__ = ("__weakref__",)

    def close(self) -> None:
        raise NotImplementedError

    def _left_waiting(self) -> str | None:
        """What goes wrong if this handle disappears unclosed now (tasks left waiting)."""
        return None

    def __del__(self) -> None:
        try:
            consequence = self._left_waiting()
        except AttributeError:  # never fully built
            return
        if consequence is not None:
            warn_unclosed(self, consequence)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
