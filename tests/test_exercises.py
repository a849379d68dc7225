"""`telemetry_lab.exercises`: how every checker passes, rejects with a hint, or waits."""

from __future__ import annotations

import asyncio

import pytest

from telemetry_lab.exercises import ExerciseRejected, Result, exercise, is_stub, reject


def stub_plain(x: int) -> int:
    # Your answer here: replace the next line.
    raise NotImplementedError


async def stub_async(x: int) -> int:
    """A docstring does not count as an answer."""
    raise NotImplementedError("your answer here")


def attempted(x: int) -> int:
    if x < 0:
        raise NotImplementedError  # part of a real answer
    return x


@exercise(3, sync=True)
def check_double(double: object) -> str:
    assert callable(double)
    got = double(2)
    if got == 2:
        reject("double(2) gave 2: the value came back unchanged", "multiply by 2")
    if got != 4:
        reject(f"double(2) gave {got!r}", "return x * 2")
    return "double(2) == 4"


@exercise(4)
async def check_async(answer: object) -> None:
    assert callable(answer)
    await asyncio.sleep(0)
    answer(1)


def test_stubs_are_recognised_from_their_source() -> None:
    assert is_stub(stub_plain)
    assert is_stub(stub_async)
    assert not is_stub(attempted)
    assert not is_stub(len)  # no Python source: counts as attempted


def test_a_passing_answer_prints_one_line_and_returns_a_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = check_double(lambda x: x * 2)
    assert result == Result(exercise=3, passed=True, detail="double(2) == 4")
    assert capsys.readouterr().out == "✅ Exercise 3 passed: double(2) == 4\n"


def test_a_wrong_answer_is_rejected_with_the_mistake_and_a_hint() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 3: double\(2\) gave 2: the value came back unchanged\n"
        r"   Hint: multiply by 2$",
    ):
        check_double(lambda x: x)


def test_a_stub_is_not_attempted_and_raises_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_double(stub_plain) == Result(exercise=3, passed=False)
    assert capsys.readouterr().out.startswith("⏳ Exercise 3 is not attempted yet: ")


def test_the_solution_cell_may_not_be_a_stub() -> None:
    with pytest.raises(NotImplementedError):
        check_double(stub_plain, solution=True)


def test_a_bug_in_the_answer_keeps_its_traceback_with_a_note() -> None:
    def buggy(x: int) -> int:
        return x / 0  # type: ignore[return-value]

    with pytest.raises(ZeroDivisionError) as raised:
        check_double(buggy)
    assert raised.value.__notes__ == ["(raised while checking your answer to Exercise 3)"]


async def test_not_implemented_inside_a_task_group_still_means_not_attempted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def nested(x: int) -> None:
        # what a TaskGroup around an unfinished helper raises
        raise ExceptionGroup("unhandled errors in a TaskGroup", [NotImplementedError()])

    assert not (await check_async(nested)).passed
    assert "not attempted yet" in capsys.readouterr().out


def test_the_decorator_refuses_the_wrong_kind_of_check() -> None:
    with pytest.raises(TypeError, match=r"^exercise\(1, sync=True\) needs a plain function$"):
        exercise(1, sync=True)(check_async.__wrapped__)  # type: ignore[attr-defined]
