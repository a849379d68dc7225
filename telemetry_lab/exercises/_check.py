"""The machinery every exercise checker shares: pass, reject with a hint, or not attempted."""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import textwrap
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar, overload

__all__ = [
    "ExerciseRejected",
    "Result",
    "cancel_new_tasks",
    "caused_by",
    "exercise",
    "is_stub",
    "reject",
    "surface",
]

P = ParamSpec("P")
A = TypeVar("A")

STUB_HINT = (
    "replace `raise NotImplementedError` in the cell above with your answer, run that cell, "
    "then this one"
)


class ExerciseRejected(AssertionError):
    """An answer did not do what the exercise asks; the message says why and hints how."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """How one check of one answer ended."""

    exercise: int
    """The exercise's number in its notebook."""
    passed: bool
    """True if the answer passed; False if it was not attempted yet (a rejection raises)."""
    detail: str = ""
    """What the check measured, in words (may be empty)."""

    def _ipython_display_(self) -> None:
        """Show nothing in a notebook: the checker has already printed its one line."""


def caused_by(exc: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The `kind` exception in `exc`, its chain (cause, context) or its group, if any."""
    seen: set[int] = set()
    todo = [exc] if exc is not None else []
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def reject(mistake: str, hint: str) -> NoReturn:
    """Reject the answer: `mistake` says what went wrong, `hint` how to fix it."""
    raise ExerciseRejected(f"{mistake}\n   Hint: {hint}")


def is_stub(answer: object) -> bool:
    """Whether `answer` is still the notebook's stub: a body of only `raise NotImplementedError`.

    Read from its source (IPython keeps the source of cells); an answer whose source cannot be
    read counts as attempted, and a stub is still caught when it raises.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(answer)))  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError):
        return False
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(functions) != 1:
        return False
    body = [n for n in functions[0].body if not isinstance(n, ast.Expr)]  # docstrings
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return False
    raised = body[0].exc
    if isinstance(raised, ast.Call):
        raised = raised.func
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


async def cancel_new_tasks(before: set[asyncio.Task[Any]]) -> int:
    """Cancel the tasks created since `before` that are still running; wait for them to end.

    Those are the answer's own tasks, left without an owner when it returned (or when the
    check stopped it): the check finishes them so that nothing outlives it. Returns how many.
    """
    left = [task for task in asyncio.all_tasks() - before if not task.done()]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left)
    for task in left:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" later
    return len(left)


def surface(task: asyncio.Future[Any]) -> None:
    """If the learner's `task` has already failed, raise its exception (stubs included)."""
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def _not_attempted(exc: BaseException) -> bool:
    """Whether `exc` comes from a stub (NotImplementedError), even inside a group or chain."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NotImplementedError):
            return True
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def _finish(number: int, solution: bool, detail: str | None) -> Result:
    who = f"The solution to Exercise {number}" if solution else f"Exercise {number}"
    verb = "passes its check" if solution else "passed"
    print(f"✅ {who} {verb}" + (f": {detail}" if detail else ""))
    return Result(exercise=number, passed=True, detail=detail or "")


def _fail(number: int, exc: BaseException, solution: bool) -> Result:
    if isinstance(exc, ExerciseRejected):
        raise ExerciseRejected(f"❌ Exercise {number}: {exc}") from None
    if _not_attempted(exc) and not solution:
        print(f"⏳ Exercise {number} is not attempted yet: {STUB_HINT}.")
        return Result(exercise=number, passed=False)
    exc.add_note(f"(raised while checking your answer to Exercise {number})")
    raise exc


Check = Callable[Concatenate[A, P], Coroutine[Any, Any, str | None]]
SyncCheck = Callable[Concatenate[A, P], str | None]


@overload
def exercise(
    number: int,
) -> Callable[[Check[A, P]], Callable[Concatenate[A, P], Awaitable[Result]]]: ...


@overload
def exercise(
    number: int, *, sync: bool
) -> Callable[[SyncCheck[A, P]], Callable[Concatenate[A, P], Result]]: ...


def exercise(number: int, *, sync: bool = False) -> Any:
    """Turn a check into a checker for Exercise `number`.

    The check takes the learner's answer (and any further arguments), raises
    `ExerciseRejected` through `reject()` when it is wrong, and returns a short description
    of what it measured (or None). The checker adds the ✅ line, turns a stub's
    `NotImplementedError` into "not attempted", and takes `solution=True` for the
    notebook's own solution cell (where not attempted is an error, not a message).
    An async check gives a checker that returns an awaitable; `sync=True` marks a plain one.
    """

    def decorate(check: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(check) == sync:
            kind = "a plain function" if sync else "an async def"
            raise TypeError(f"exercise({number}{', sync=True' if sync else ''}) needs {kind}")

        if sync:

            @functools.wraps(check)
            def run_sync(answer: Any, *args: Any, solution: bool = False, **kw: Any) -> Result:
                if is_stub(answer) and not solution:
                    return _fail(number, NotImplementedError(), solution)
                try:
                    detail = check(answer, *args, **kw)
                except Exception as exc:  # sorted out by _fail
                    return _fail(number, exc, solution)
                return _finish(number, solution, detail)

            return run_sync

        @functools.wraps(check)
        async def run_async(answer: Any, *args: Any, solution: bool = False, **kw: Any) -> Result:
            if is_stub(answer) and not solution:
                return _fail(number, NotImplementedError(), solution)
            try:
                detail = await check(answer, *args, **kw)
            except Exception as exc:  # sorted out by _fail
                return _fail(number, exc, solution)
            return _finish(number, solution, detail)

        return run_async

    return decorate
