"""Tests for the fault knobs of `GatewayConfig`: validation, normalisation and helpers.

Every new field is checked with values below and above its range, wrong types (bool, str,
None) and NaN/infinities. The expected messages are written out here, not derived from
the module under test.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab.config import GatewayConfig


def make(tmp_path: Path, **fields: Any) -> GatewayConfig:
    return GatewayConfig(db_path=tmp_path / "t.db", **fields)


def raises_exactly(message: str) -> Any:
    return pytest.raises(ValueError, match=rf"^{re.escape(message)}$")


RATE_FIELDS = ["storage_failure_rate", "malformed_rate", "device_crash_rate"]


# --- rates: storage_failure_rate, malformed_rate, device_crash_rate -------------------------


@pytest.mark.parametrize("field", RATE_FIELDS)
@pytest.mark.parametrize(
    ("value", "shown"), [(-0.01, "-0.01"), (1.01, "1.01"), (-1, "-1"), (2, "2")]
)
def test_a_rate_outside_0_1_is_refused(
    tmp_path: Path, field: str, value: float, shown: str
) -> None:
    with raises_exactly(f"{field} must be in [0, 1], got {shown}"):
        make(tmp_path, **{field: value})


@pytest.mark.parametrize("field", RATE_FIELDS)
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (True, "True"),
        (False, "False"),
        ("0.5", "'0.5'"),
        (None, "None"),
    ],
)
def test_a_rate_that_is_not_a_finite_number_is_refused(
    tmp_path: Path, field: str, value: object, shown: str
) -> None:
    with raises_exactly(f"{field} must be a finite number in [0, 1], got {shown}"):
        make(tmp_path, **{field: value})


@pytest.mark.parametrize("field", RATE_FIELDS)
@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0])
def test_a_rate_in_0_1_is_accepted(tmp_path: Path, field: str, value: float) -> None:
    config = make(tmp_path, **{field: value})
    assert getattr(config, field) == value


# --- storage_outage --------------------------------------------------------------------------

OUTAGE_ALLOWED = "None or (start, end) seconds with 0 <= start < end <= 86400"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ((1.0,), "(1.0,)"),
        ((1.0, 2.0, 3.0), "(1.0, 2.0, 3.0)"),
        ((), "()"),
        ([1, 2, 3], "[1, 2, 3]"),
        ("ab", "'ab'"),
        (5.0, "5.0"),
        ({1: 2, 3: 4}, "{1: 2, 3: 4}"),
        ((5, 5), "(5, 5)"),
        ((5.0, 4.0), "(5.0, 4.0)"),
        ((-1, 5), "(-1, 5)"),
        ((-5, -1), "(-5, -1)"),
        ((0, 86_400.5), "(0, 86400.5)"),
        ((90_000, 90_001), "(90000, 90001)"),
        ((math.nan, 5), "(nan, 5)"),
        ((0, math.nan), "(0, nan)"),
        ((0, math.inf), "(0, inf)"),
        ((True, 5), "(True, 5)"),
        ((0, "5"), "(0, '5')"),
        ((None, 5), "(None, 5)"),
    ],
    ids=[
        "one",
        "three",
        "empty",
        "list-of-three",
        "str-of-two",
        "number",
        "dict-of-two",
        "start-equals-end",
        "start-after-end",
        "negative-start",
        "both-negative",
        "end-past-a-day",
        "past-a-day",
        "nan-start",
        "nan-end",
        "inf-end",
        "bool",
        "str-entry",
        "none-entry",
    ],
)
def test_a_bad_storage_outage_is_refused(tmp_path: Path, value: object, shown: str) -> None:
    with raises_exactly(f"storage_outage must be {OUTAGE_ALLOWED}, got {shown}"):
        make(tmp_path, storage_outage=value)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (None, None),
        ((2, 9), (2.0, 9.0)),
        ([2, 9], (2.0, 9.0)),
        ((0, 86_400), (0.0, 86_400.0)),
        ((0.5, 0.75), (0.5, 0.75)),
    ],
)
def test_a_valid_storage_outage_is_stored_as_a_pair_of_floats(
    tmp_path: Path, value: object, stored: tuple[float, float] | None
) -> None:
    config = make(tmp_path, storage_outage=value)
    assert config.storage_outage == stored
    if stored is not None:
        assert type(config.storage_outage) is tuple
        assert [type(x) for x in stored] == [float, float]
        assert [type(x) for x in config.storage_outage] == [float, float]


# --- storage_latency -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.5, "storage_latency must be in [0, 60], got -0.5"),
        (-1, "storage_latency must be in [0, 60], got -1"),
        (60.5, "storage_latency must be in [0, 60], got 60.5"),
        (math.nan, "storage_latency must be a finite number in [0, 60], got nan"),
        (math.inf, "storage_latency must be a finite number in [0, 60], got inf"),
        (True, "storage_latency must be a finite number in [0, 60], got True"),
        ("1", "storage_latency must be a finite number in [0, 60], got '1'"),
        (None, "storage_latency must be a finite number in [0, 60], got None"),
    ],
)
def test_a_bad_storage_latency_is_refused(tmp_path: Path, value: object, message: str) -> None:
    with raises_exactly(message):
        make(tmp_path, storage_latency=value)


@pytest.mark.parametrize("value", [0, 0.0, 0.25, 60])
def test_a_storage_latency_in_0_60_is_accepted(tmp_path: Path, value: float) -> None:
    assert make(tmp_path, storage_latency=value).storage_latency == value


# --- client_delays ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.5, "0.5"), (None, "None"), ("0.5", "'0.5'"), ({0.5}, "{0.5}"), (range(2), "range(0, 2)")],
)
def test_client_delays_that_are_not_a_tuple_or_list_are_refused(
    tmp_path: Path, value: object, shown: str
) -> None:
    with raises_exactly(f"client_delays must be a tuple of seconds, one per client, got {shown}"):
        make(tmp_path, client_delays=value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((-0.1,), "client_delays[0] must be in [0, 60], got -0.1"),
        ((0.0, -1), "client_delays[1] must be in [0, 60], got -1"),
        ((0.5, 0.5, 61.0), "client_delays[2] must be in [0, 60], got 61.0"),
        ((0.5, math.nan), "client_delays[1] must be a finite number in [0, 60], got nan"),
        ([math.inf], "client_delays[0] must be a finite number in [0, 60], got inf"),
        ((0, 0, 0, True), "client_delays[3] must be a finite number in [0, 60], got True"),
        (("0.5",), "client_delays[0] must be a finite number in [0, 60], got '0.5'"),
        ((None,), "client_delays[0] must be a finite number in [0, 60], got None"),
    ],
)
def test_a_bad_client_delay_entry_is_refused_naming_its_index(
    tmp_path: Path, value: object, message: str
) -> None:
    with raises_exactly(message):
        make(tmp_path, client_delays=value)


@pytest.mark.parametrize(
    ("clients", "delays", "message"),
    [
        (4, (0.1,) * 5, "client_delays has 5 entries but clients is 4"),
        (1, (0.0, 0.0), "client_delays has 2 entries but clients is 1"),
        (0, (0.5,), "client_delays has 1 entries but clients is 0"),
    ],
)
def test_more_client_delays_than_clients_is_refused(
    tmp_path: Path, clients: int, delays: tuple[float, ...], message: str
) -> None:
    with raises_exactly(message):
        make(tmp_path, clients=clients, client_delays=delays)


@pytest.mark.parametrize(
    ("clients", "value", "stored"),
    [
        (4, (), ()),
        (4, [], ()),
        (0, (), ()),
        (4, [0.5], (0.5,)),
        (4, (1, 0, 2.5, 60), (1.0, 0.0, 2.5, 60.0)),
        (2, [0, 0.25], (0.0, 0.25)),
    ],
)
def test_valid_client_delays_are_stored_as_a_tuple_of_floats(
    tmp_path: Path, clients: int, value: object, stored: tuple[float, ...]
) -> None:
    config = make(tmp_path, clients=clients, client_delays=value)
    assert config.client_delays == stored
    assert type(config.client_delays) is tuple
    assert all(type(d) is float for d in config.client_delays)


def test_client_delay_returns_the_entry_of_a_1_based_client_and_0_when_missing(
    tmp_path: Path,
) -> None:
    config = make(tmp_path, clients=4, client_delays=(0.5, 0.0, 1.5))
    assert [config.client_delay(i) for i in (1, 2, 3, 4)] == [0.5, 0.0, 1.5, 0.0]
    assert make(tmp_path).client_delay(1) == 0.0
    assert make(tmp_path).client_delay(4) == 0.0
    assert type(config.client_delay(4)) is float


# --- retry policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "retry_initial must be in [0.001, 60], got 0"),
        (0.0, "retry_initial must be in [0.001, 60], got 0.0"),
        (1e-300, "retry_initial must be in [0.001, 60], got 1e-300"),
        (10**400, "retry_initial must be a finite number in [0.001, 60], got " + str(10**400)),
        (-0.1, "retry_initial must be in [0.001, 60], got -0.1"),
        (60.5, "retry_initial must be in [0.001, 60], got 60.5"),
        (math.nan, "retry_initial must be a finite number in [0.001, 60], got nan"),
        (math.inf, "retry_initial must be a finite number in [0.001, 60], got inf"),
        (True, "retry_initial must be a finite number in [0.001, 60], got True"),
        ("0.1", "retry_initial must be a finite number in [0.001, 60], got '0.1'"),
    ],
)
def test_a_bad_retry_initial_is_refused(tmp_path: Path, value: object, message: str) -> None:
    with raises_exactly(message):
        make(tmp_path, retry_initial=value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "retry_max_interval must be in [0.001, 3600], got 0"),
        (-2.0, "retry_max_interval must be in [0.001, 3600], got -2.0"),
        (3600.5, "retry_max_interval must be in [0.001, 3600], got 3600.5"),
        (math.nan, "retry_max_interval must be a finite number in [0.001, 3600], got nan"),
        (False, "retry_max_interval must be a finite number in [0.001, 3600], got False"),
    ],
)
def test_a_bad_retry_max_interval_is_refused(tmp_path: Path, value: object, message: str) -> None:
    with raises_exactly(message):
        make(tmp_path, retry_max_interval=value)


@pytest.mark.parametrize(
    ("initial", "max_interval", "message"),
    [
        (0.5, 0.25, "retry_max_interval must be >= retry_initial (0.5), got 0.25"),
        (3, 2.0, "retry_max_interval must be >= retry_initial (3), got 2.0"),
        (0.1, 0.09, "retry_max_interval must be >= retry_initial (0.1), got 0.09"),
    ],
)
def test_retry_max_interval_below_retry_initial_is_refused(
    tmp_path: Path, initial: float, max_interval: float, message: str
) -> None:
    with raises_exactly(message):
        make(tmp_path, retry_initial=initial, retry_max_interval=max_interval)


def test_the_default_max_interval_is_checked_against_a_larger_initial(tmp_path: Path) -> None:
    with raises_exactly("retry_max_interval must be >= retry_initial (5.0), got 2.0"):
        make(tmp_path, retry_initial=5.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "retry_max_elapsed must be in [0, 86400], got -1"),
        (-0.001, "retry_max_elapsed must be in [0, 86400], got -0.001"),
        (86_401, "retry_max_elapsed must be in [0, 86400], got 86401"),
        (math.nan, "retry_max_elapsed must be a finite number in [0, 86400], got nan"),
        (math.inf, "retry_max_elapsed must be a finite number in [0, 86400], got inf"),
        (True, "retry_max_elapsed must be a finite number in [0, 86400], got True"),
        (None, "retry_max_elapsed must be a finite number in [0, 86400], got None"),
    ],
)
def test_a_bad_retry_max_elapsed_is_refused(tmp_path: Path, value: object, message: str) -> None:
    with raises_exactly(message):
        make(tmp_path, retry_max_elapsed=value)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (0.1, 2.0, 10.0)),
        ({"retry_initial": 0.5, "retry_max_interval": 0.5}, (0.5, 0.5, 10.0)),
        ({"retry_initial": 60, "retry_max_interval": 3600}, (60, 3600, 10.0)),
        ({"retry_max_elapsed": 0}, (0.1, 2.0, 0)),
        ({"retry_max_elapsed": 86_400}, (0.1, 2.0, 86_400)),
    ],
)
def test_valid_retry_settings_are_accepted(
    tmp_path: Path, fields: dict[str, float], expected: tuple[float, float, float]
) -> None:
    config = make(tmp_path, **fields)
    assert (config.retry_initial, config.retry_max_interval, config.retry_max_elapsed) == expected


# --- helpers ---------------------------------------------------------------------------------


def test_faults_are_off_by_default(tmp_path: Path) -> None:
    config = make(tmp_path)
    assert config.faults_enabled is False
    assert (config.storage_failure_rate, config.storage_outage, config.storage_latency) == (
        0.0,
        None,
        0.0,
    )
    assert config.client_delays == ()
    assert (config.malformed_rate, config.device_crash_rate) == (0.0, 0.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"retry_initial": 1.0},
        {"retry_max_interval": 10.0},
        {"retry_max_elapsed": 0},
        {"client_delays": (0.0, 0.0, 0.0, 0.0)},
        {"storage_failure_rate": 0.0, "malformed_rate": 0, "device_crash_rate": 0.0},
    ],
    ids=["retry_initial", "retry_max_interval", "retry_max_elapsed", "zero-delays", "zero-rates"],
)
def test_retry_settings_and_zero_knobs_do_not_enable_faults(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    assert make(tmp_path, **fields).faults_enabled is False


@pytest.mark.parametrize(
    "fields",
    [
        {"storage_failure_rate": 0.01},
        {"storage_outage": (0, 1)},
        {"storage_latency": 0.1},
        {"client_delays": (0.0, 0.0, 0.5)},
        {"malformed_rate": 1.0},
        {"device_crash_rate": 0.5},
    ],
    ids=lambda fields: next(iter(fields)),
)
def test_each_fault_knob_enables_faults(tmp_path: Path, fields: dict[str, Any]) -> None:
    assert make(tmp_path, **fields).faults_enabled is True


def test_replace_validates_the_fault_knobs(tmp_path: Path) -> None:
    config = make(tmp_path, storage_outage=[1, 2], client_delays=[0.5])
    assert config.replace(storage_failure_rate=0.5).storage_failure_rate == 0.5
    assert config.replace(storage_failure_rate=0.5).storage_outage == (1.0, 2.0)
    with raises_exactly("storage_failure_rate must be in [0, 1], got 1.5"):
        config.replace(storage_failure_rate=1.5)
    with raises_exactly("client_delays has 1 entries but clients is 0"):
        config.replace(clients=0)
    with raises_exactly("retry_max_interval must be >= retry_initial (2.5), got 2.0"):
        config.replace(retry_initial=2.5)


def test_to_dict_gives_the_fault_knobs_as_json_values(tmp_path: Path) -> None:
    config = make(
        tmp_path,
        storage_failure_rate=0.25,
        storage_outage=(2, 9),
        storage_latency=0.5,
        client_delays=[0.5, 0],
        malformed_rate=0.3,
        device_crash_rate=0.1,
        retry_initial=0.2,
        retry_max_interval=4,
        retry_max_elapsed=3,
    )
    out = config.to_dict()
    faults = {key: out[key] for key in list(out)[15:]}
    assert faults == {
        "storage_failure_rate": 0.25,
        "storage_outage": [2.0, 9.0],
        "storage_latency": 0.5,
        "client_delays": [0.5, 0.0],
        "malformed_rate": 0.3,
        "device_crash_rate": 0.1,
        "retry_initial": 0.2,
        "retry_max_interval": 4,
        "retry_max_elapsed": 3,
    }
    assert json.loads(json.dumps(out)) == out


@pytest.mark.parametrize("client_id", [0, -1, 3])
def test_client_delay_refuses_ids_outside_the_clients(client_id: int) -> None:
    config = GatewayConfig(clients=2, client_delays=(0.5, 0.2))
    with pytest.raises(ValueError, match=rf"^client_id must be in \[1, 2\], got {client_id}$"):
        config.client_delay(client_id)
