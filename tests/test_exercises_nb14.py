"""The checkers of notebook 14 accept a right decision and explain the classic wrong ones."""

from __future__ import annotations

from typing import Any

import pytest

from telemetry_lab import GatewayConfig
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb14 import check_exercise_1, check_exercise_2


def predict_ledger(config: GatewayConfig) -> set[str]:
    parts = {"stored"}
    if config.malformed_rate > 0:
        parts.add("rejected")
    if config.storage_outage is not None:
        start, end = config.storage_outage
        if end - start > config.retry_max_elapsed:
            parts.add("dead_lettered")
    if config.storage_latency > config.shutdown_timeout:
        parts.add("in_flight")
    return parts


def failures_are_dead_letters(config: GatewayConfig) -> set[str]:
    parts = predict_ledger(config)
    if config.storage_failure_rate or config.storage_outage:
        parts.add("dead_lettered")  # as if every failure ended in dead_letters
    return parts


def any_outage_dead_letters(config: GatewayConfig) -> set[str]:
    parts = predict_ledger(config)
    if config.storage_outage:
        parts.add("dead_lettered")  # the budget is not compared with the outage
    return parts


def slow_means_in_flight(config: GatewayConfig) -> set[str]:
    parts = predict_ledger(config)
    if config.client_delays or config.storage_latency:
        parts.add("in_flight")
    return parts


def forgets_the_drain(config: GatewayConfig) -> set[str]:
    return predict_ledger(config) - {"in_flight"}


def predicts_lost(config: GatewayConfig) -> set[str]:
    parts = predict_ledger(config)
    if "in_flight" in parts:
        parts = parts - {"in_flight"} | {"lost"}
    return parts


def stub_prediction(config: GatewayConfig) -> set[str]:
    # Your answer here: replace the next line.
    raise NotImplementedError


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(predict_ledger)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: 9 faulty runs, every ledger predicted\n"
    )


async def test_a_stub_is_not_attempted_and_raises_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (await check_exercise_1(stub_prediction)).passed
    assert not (await check_exercise_2(stub_settings)).passed
    out = capsys.readouterr().out
    assert out.startswith("⏳ Exercise 1 is not attempted yet: replace `raise NotImplementedError`")
    assert "⏳ Exercise 2 is not attempted yet" in out
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub_prediction, solution=True)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(stub_settings, solution=True)


async def test_exercise_1_explains_that_retried_failures_are_not_dead_letters() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: for transient write failures \(storage_failure_rate=0.5, default "
        r"10 s budget\) you predicted dead_lettered, but the run had none: transient failures "
        r"are retried \(\d+ retries\), and every retried batch got through\n"
        r"   Hint: only a batch still failing when its budget \(retry_max_elapsed\) runs out",
    ):
        await check_exercise_1(failures_are_dead_letters)


async def test_exercise_1_compares_the_outage_with_the_budget() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: for a 0.3 s outage against a 1 s retry budget .* you predicted "
        r"dead_lettered, but the run had none: the outage \(0.3 s\) is shorter than the retry "
        r"budget \(1 s\), so the retries outlasted it\n   Hint: compare the outage's length",
    ):
        await check_exercise_1(any_outage_dead_letters)


async def test_exercise_1_explains_that_a_slow_client_holds_no_reading() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: for a slow client \(client_delays=\(0.2,\)\) you predicted "
        r"in_flight, but the run had none: a slow client holds no reading of the ledger; it "
        r"lags \(\d+ updates missed\).*\n   Hint: clients are lossy by design",
    ):
        await check_exercise_1(slow_means_in_flight)


async def test_exercise_1_explains_a_drain_out_of_time() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: for a drain out of time \(storage_latency=1.0, "
        r"shutdown_timeout=0.3\) \d+ readings were still in flight at the end, and you did not "
        r"predict it\n   Hint: when one write takes longer than shutdown_timeout",
    ):
        await check_exercise_1(forgets_the_drain)


async def test_exercise_1_explains_that_lost_is_not_a_place() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r'^❌ Exercise 1: for a drain out of time .* you predicted "lost": it is not a '
        r"place a reading ends in\n   Hint: lost is produced - stored",
    ):
        await check_exercise_1(predicts_lost)


async def test_exercise_1_wants_a_set_of_names() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: for malformed readings \(malformed_rate=0.2\) predict_ledger "
        r"returned str, not a set of names",
    ):
        await check_exercise_1(lambda config: "stored")


def retry_settings(outage: float, shutdown_timeout: float) -> dict[str, Any]:
    wait = min(0.2, shutdown_timeout / 4)
    return {"retry_max_interval": wait, "retry_max_elapsed": outage + 2 * wait}


def stub_settings(outage: float, shutdown_timeout: float) -> dict[str, Any]:
    # Your answer here: replace the next line.
    raise NotImplementedError


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(retry_settings)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 3 outages (0.6 to 3 s): nothing dead-lettered, every drain "
        "finished\n"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            lambda outage, timeout: {"retry_max_elapsed": outage / 2, "retry_max_interval": 0.2},
            r"^❌ Exercise 2: readings were dead-lettered in the 0.6 s outage \(budget 0.3 s, "
            r"retry_max_interval 0.2 s\): \d+ of them; the budget ran out before the outage "
            r"ended\n   Hint: the budget must outlast the outage",
        ),
        (
            lambda outage, timeout: {"retry_max_elapsed": outage, "retry_max_interval": 0.2},
            r"^❌ Exercise 2: readings were dead-lettered in the 0.6 s outage \(budget 0.6 s, "
            r"retry_max_interval 0.2 s\): \d+ of them; the budget covers the outage but not the "
            r"wait that follows.*\n   Hint: leave a margin of one wait",
        ),
        (
            lambda outage, timeout: {"retry_max_elapsed": outage + 3},  # default 2 s waits
            r"^❌ Exercise 2: the drain did not finish in the 2 s outage \(budget 5 s, "
            r"retry_max_interval 2 s\): \d+ readings were still in flight when shutdown_timeout "
            r"\(1 s\) ran out.*\n   Hint: cap the wait between retries \(retry_max_interval\)",
        ),
        (
            lambda outage, timeout: {"retry_max_elapsed": outage + 1, "seed": 7},
            r"^❌ Exercise 2: retry_settings\(0.6, 1\) set seed: only the retry policy is yours",
        ),
        (
            lambda outage, timeout: {"retry_max_elapsed": 1.0, "retry_max_interval": 0.01},
            r"^❌ Exercise 2: GatewayConfig refused your settings for a 0.6 s outage: "
            r"retry_max_interval must be >= retry_initial \(0.02\), got 0.01",
        ),
        (
            lambda outage, timeout: (outage + 1, 0.2),
            r"^❌ Exercise 2: retry_settings\(0.6, 1\) returned tuple, not a dict",
        ),
    ],
)
async def test_exercise_2_explains_the_classic_wrong_budgets(settings: Any, message: str) -> None:
    with pytest.raises(ExerciseRejected, match=message):
        await check_exercise_2(settings)
