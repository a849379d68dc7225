"""Tests for `telemetry_lab.config`: defaults, immutability and validation of `GatewayConfig`.

Every field is checked below its range, above it, with wrong types (str, bool, None, and a
float for integer fields, NaN and infinities for float fields), and at its allowed bounds.
The expected messages are written out here, not derived from the module under test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab.config import GatewayConfig

# (field, low, high) for the integer fields; messages print the bounds as written here.
INT_FIELDS: list[tuple[str, int, int]] = [
    ("devices", 1, 1_000),
    ("clients", 0, 1_000),
    ("telemetry_capacity", 1, 1_000_000),
    ("storage_capacity", 1, 1_000_000),
    ("broadcast_capacity", 1, 1_000_000),
    ("batch_size", 1, 100_000),
    ("device_bandwidth", 1, 10_000),
    ("db_connections", 1, 64),
    ("seed", 0, 2**63 - 1),
]

# (field, low, high, low_is_open) for the float fields. (device_interval, which also
# accepts 0, has tests of its own.)
FLOAT_FIELDS: list[tuple[str, float, float, bool]] = [
    ("duration", 0, 86_400, True),
    ("flush_interval", 0.001, 3_600, False),
    ("shutdown_timeout", 0.01, 3_600, False),
    ("sample_interval", 0.01, 60, False),
]

ALL_FIELDS = [
    "devices",
    "clients",
    "duration",
    "telemetry_capacity",
    "storage_capacity",
    "broadcast_capacity",
    "batch_size",
    "flush_interval",
    "device_bandwidth",
    "db_connections",
    "db_path",
    "seed",
    "shutdown_timeout",
    "device_interval",
    "sample_interval",
    "storage_failure_rate",
    "storage_outage",
    "storage_latency",
    "client_delays",
    "malformed_rate",
    "device_crash_rate",
    "retry_initial",
    "retry_max_interval",
    "retry_max_elapsed",
]


def exact(message: str) -> str:
    """A `match=` pattern that accepts exactly `message`."""
    return rf"^{re.escape(message)}$"


def int_cases() -> list[Any]:
    cases: list[Any] = []
    for name, low, high in INT_FIELDS:
        bounds = f"[{low}, {high}]"
        for value, what in [(low - 1, "below"), (high + 1, "above"), (-(10**20), "far below")]:
            message = f"{name} must be in {bounds}, got {value!r}"
            cases.append(pytest.param(name, value, message, id=f"{name}-{what}"))
        for value, what in [
            ("5", "str"),
            (True, "bool-true"),
            (False, "bool-false"),
            (None, "none"),
            (5.0, "float"),
            (float("nan"), "nan"),
        ]:
            message = f"{name} must be an integer in {bounds}, got {value!r}"
            cases.append(pytest.param(name, value, message, id=f"{name}-{what}"))
    return cases


def float_cases() -> list[Any]:
    cases: list[Any] = []
    for name, low, high, open_low in FLOAT_FIELDS:
        allowed = f"{'(' if open_low else '['}{low}, {high}]"
        below: list[tuple[object, str]] = [(-1.0, "negative"), (-1e-9, "just-below-zero")]
        if open_low or low > 0:
            below += [(0, "zero-int"), (0.0, "zero")]
        if low > 0:
            below += [(math.nextafter(low, 0), "just-below-low"), (1e-300, "tiny")]
        above: list[tuple[object, str]] = [(high + 0.5, "above"), (high + 1, "above-int")]
        for value, what in below + above:
            message = f"{name} must be in {allowed}, got {value!r}"
            cases.append(pytest.param(name, value, message, id=f"{name}-{what}"))
        for value, what in [
            ("1.0", "str"),
            (True, "bool-true"),
            (False, "bool-false"),
            (None, "none"),
            (float("nan"), "nan"),
            (float("inf"), "inf"),
            (float("-inf"), "-inf"),
            (1 + 0j, "complex"),
            (10**400, "huge-int"),
        ]:
            message = f"{name} must be a finite number in {allowed}, got {value!r}"
            cases.append(pytest.param(name, value, message, id=f"{name}-{what}"))
    return cases


def boundary_cases() -> list[Any]:
    cases: list[Any] = []
    for name, low, high in INT_FIELDS:
        cases.append(pytest.param(name, low, id=f"{name}-low"))
        cases.append(pytest.param(name, high, id=f"{name}-high"))
    for name, low, high, open_low in FLOAT_FIELDS:
        smallest = 1e-9 if open_low else low
        cases += [
            pytest.param(name, smallest, id=f"{name}-smallest"),
            pytest.param(name, float(high), id=f"{name}-high"),
            pytest.param(name, int(high), id=f"{name}-high-int"),
        ]
    return cases


# --------------------------------------------------------------------------- defaults


def test_defaults_reproduce_the_seed_demo() -> None:
    config = GatewayConfig()
    assert config.devices == 7
    assert config.clients == 4
    assert config.duration == 10.0
    assert config.telemetry_capacity == 50
    assert config.storage_capacity == 10
    assert config.broadcast_capacity == 100
    assert config.batch_size == 10
    assert config.flush_interval == 5.0
    assert config.device_bandwidth == 3
    assert config.db_connections == 2
    assert config.db_path == Path("telemetry.db")
    assert type(config.db_path) is type(Path("telemetry.db"))
    assert config.seed == 42
    assert config.shutdown_timeout == 5.0
    assert config.device_interval == 1.5
    assert config.sample_interval == 0.25


def test_the_fields_are_the_documented_ones_in_order() -> None:
    assert [f.name for f in dataclasses.fields(GatewayConfig)] == ALL_FIELDS


def test_equal_configs_compare_equal_and_hash_alike() -> None:
    assert GatewayConfig() == GatewayConfig()
    assert hash(GatewayConfig()) == hash(GatewayConfig())
    assert GatewayConfig(db_path="a.db") == GatewayConfig(db_path=Path("a.db"))
    assert GatewayConfig(devices=3) != GatewayConfig()


# --------------------------------------------------------------------------- immutability


def test_assigning_a_field_raises_frozen_instance_error() -> None:
    config = GatewayConfig()
    with pytest.raises(
        dataclasses.FrozenInstanceError, match=r"^cannot assign to field 'devices'$"
    ):
        config.devices = 3  # type: ignore[misc]
    assert config.devices == 7


def test_deleting_a_field_raises_frozen_instance_error() -> None:
    config = GatewayConfig()
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"^cannot delete field 'seed'$"):
        del config.seed  # type: ignore[misc]
    assert config.seed == 42


def test_positional_arguments_raise_type_error() -> None:
    pattern = r"^GatewayConfig\.__init__\(\) takes 1 positional argument but 2 were given$"
    with pytest.raises(TypeError, match=pattern):
        GatewayConfig(7)  # type: ignore[misc]


def test_an_unknown_field_raises_type_error() -> None:
    pattern = r"^GatewayConfig\.__init__\(\) got an unexpected keyword argument 'bogus'$"
    with pytest.raises(TypeError, match=pattern):
        GatewayConfig(bogus=1)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("name", "value", "message"), int_cases())
def test_an_invalid_integer_field_names_field_value_and_range(
    name: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=exact(message)):
        GatewayConfig(**{name: value})


@pytest.mark.parametrize(("name", "value", "message"), float_cases())
def test_an_invalid_float_field_names_field_value_and_range(
    name: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=exact(message)):
        GatewayConfig(**{name: value})


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"devices": 0}, r"^devices must be in \[1, 1000\], got 0$"),
        ({"devices": 10_000}, r"^devices must be in \[1, 1000\], got 10000$"),
        ({"clients": -1}, r"^clients must be in \[0, 1000\], got -1$"),
        ({"clients": "4"}, r"^clients must be an integer in \[0, 1000\], got '4'$"),
        ({"batch_size": True}, r"^batch_size must be an integer in \[1, 100000\], got True$"),
        ({"db_connections": 65}, r"^db_connections must be in \[1, 64\], got 65$"),
        (
            {"seed": 2**63},
            r"^seed must be in \[0, 9223372036854775807\], got 9223372036854775808$",
        ),
        ({"duration": 0.0}, r"^duration must be in \(0, 86400\], got 0\.0$"),
        (
            {"duration": float("nan")},
            r"^duration must be a finite number in \(0, 86400\], got nan$",
        ),
        (
            {"flush_interval": None},
            r"^flush_interval must be a finite number in \[0\.001, 3600\], got None$",
        ),
        (
            {"device_interval": -0.5},
            r"^device_interval must be 0 or in \[0\.001, 3600\], got -0\.5$",
        ),
        (
            {"device_interval": 1e-6},
            r"^device_interval must be 0 or in \[0\.001, 3600\], got 1e-06$",
        ),
        ({"sample_interval": 60.5}, r"^sample_interval must be in \[0\.01, 60\], got 60\.5$"),
        ({"sample_interval": 1e-300}, r"^sample_interval must be in \[0\.01, 60\], got 1e-300$"),
        (
            {"shutdown_timeout": float("inf")},
            r"^shutdown_timeout must be a finite number in \[0\.01, 3600\], got inf$",
        ),
        (
            {"duration": 10**400},
            r"^duration must be a finite number in \(0, 86400\], got 1000000000",
        ),
    ],
)
def test_messages_spelled_out(kwargs: dict[str, Any], pattern: str) -> None:
    """A few messages written literally, in case the generated ones share a mistake."""
    with pytest.raises(ValueError, match=pattern):
        GatewayConfig(**kwargs)


def test_the_first_invalid_field_in_declaration_order_is_reported() -> None:
    with pytest.raises(ValueError, match=r"^devices must be in \[1, 1000\], got 0$"):
        GatewayConfig(sample_interval=0, devices=0)


@pytest.mark.parametrize(("name", "value"), boundary_cases())
def test_boundary_values_are_accepted(name: str, value: object) -> None:
    config = GatewayConfig(**{name: value})
    assert getattr(config, name) == value


def test_clients_zero_and_device_interval_zero_are_allowed() -> None:
    config = GatewayConfig(clients=0, device_interval=0)
    assert config.clients == 0
    assert config.device_interval == 0


@pytest.mark.parametrize(
    "value", [0, 0.0, 0.001, 1, 3_600, 3_600.0], ids=["0", "0.0", "low", "1", "high", "high.0"]
)
def test_device_interval_accepts_zero_and_its_range(value: float) -> None:
    assert GatewayConfig(device_interval=value).device_interval == value


@pytest.mark.parametrize(
    "value",
    [-1.0, -1e-9, 1e-300, 1e-6, 0.000_999, 3_600.5, float("nan"), float("inf"), True, "1"],
)
def test_device_interval_refuses_everything_else(value: object) -> None:
    finite = isinstance(value, float) and math.isfinite(value)
    kind = "" if finite else "a finite number, "
    message = f"device_interval must be {kind}0 or in [0.001, 3600], got {value!r}"
    with pytest.raises(ValueError, match=exact(message)):
        GatewayConfig(device_interval=value)


# --------------------------------------------------------------------------- finishing


def test_the_estimated_virtual_work_of_the_default_demo_is_small() -> None:
    assert GatewayConfig().virtual_work() == pytest.approx(
        7 * 10 / 1.5 * (32 + 4) + 10 / 0.25 * (12 + 0.7 * 4)
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"devices": 1_000, "clients": 1_000},  # measured: 24 s on the virtual clock
        {"duration": 86_400},  # a day of the seed's demo
        {"device_interval": 0.001},
    ],
)
def test_configs_measured_to_finish_are_accepted_on_the_virtual_clock(
    changes: dict[str, Any],
) -> None:
    GatewayConfig(**changes).check_runs_on_virtual_time()


@pytest.mark.parametrize(
    "changes",
    [
        {"devices": 1_000, "clients": 1_000, "duration": 60},
        {"devices": 1_000, "duration": 86_400},
        {"duration": 3_600, "sample_interval": 0.01, "clients": 1_000},
    ],
)
def test_configs_that_would_not_finish_are_refused_on_the_virtual_clock(
    changes: dict[str, Any],
) -> None:
    config = GatewayConfig(**changes)
    work = f"{config.virtual_work():,.0f}"
    with pytest.raises(
        ValueError,
        match=rf"^this config asks for about {re.escape(work)} units of work on the virtual "
        r"clock .*; the limit is 25,000,000, about two minutes of CPU: ",
    ):
        config.check_runs_on_virtual_time()


def test_integers_are_accepted_for_float_fields() -> None:
    config = GatewayConfig(duration=3, flush_interval=1, shutdown_timeout=2, sample_interval=1)
    assert (config.duration, config.flush_interval) == (3, 1)
    assert (config.shutdown_timeout, config.sample_interval) == (2, 1)


# --------------------------------------------------------------------------- db_path


@pytest.mark.parametrize("value", ["run.db", Path("run.db")], ids=["str", "Path"])
def test_db_path_accepts_str_and_path_and_stores_a_path(value: str | Path) -> None:
    config = GatewayConfig(db_path=value)
    assert isinstance(config.db_path, Path)
    assert config.db_path == Path("run.db")


def test_db_path_keeps_an_absolute_path(tmp_path: Path) -> None:
    config = GatewayConfig(db_path=str(tmp_path / "t.db"))
    assert config.db_path == tmp_path / "t.db"


@pytest.mark.parametrize(
    "value",
    ["", ":memory:", Path(":memory:"), None, 123, b"t.db", ["t.db"]],
    ids=["empty", "memory", "memory-Path", "none", "int", "bytes", "list"],
)
def test_db_path_rejects_non_file_paths(value: object) -> None:
    message = f"db_path must be a file path (str or Path), got {value!r}"
    with pytest.raises(ValueError, match=exact(message)):
        GatewayConfig(db_path=value)  # type: ignore[arg-type]


def test_db_path_messages_spelled_out() -> None:
    with pytest.raises(ValueError, match=r"^db_path must be a file path \(str or Path\), got ''$"):
        GatewayConfig(db_path="")
    pattern = r"^db_path must be a file path \(str or Path\), got ':memory:'$"
    with pytest.raises(ValueError, match=pattern):
        GatewayConfig(db_path=":memory:")


# --------------------------------------------------------------------------- replace


def test_replace_returns_a_new_config_and_leaves_the_original() -> None:
    original = GatewayConfig()
    variant = original.replace(devices=3, db_path="v.db")
    assert variant is not original
    assert isinstance(variant, GatewayConfig)
    assert (variant.devices, variant.db_path) == (3, Path("v.db"))
    assert (original.devices, original.db_path) == (7, Path("telemetry.db"))
    assert variant == GatewayConfig(devices=3, db_path="v.db")


def test_replace_without_changes_gives_an_equal_distinct_object() -> None:
    original = GatewayConfig(seed=9)
    copy = original.replace()
    assert copy == original
    assert copy is not original


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"devices": 0}, r"^devices must be in \[1, 1000\], got 0$"),
        ({"duration": -1.0}, r"^duration must be in \(0, 86400\], got -1\.0$"),
        ({"seed": "42"}, r"^seed must be an integer in \[0, 9223372036854775807\], got '42'$"),
        ({"db_path": ":memory:"}, r"^db_path must be a file path \(str or Path\), got ':memory:'$"),
    ],
)
def test_replace_validates_like_a_new_config(changes: dict[str, Any], pattern: str) -> None:
    original = GatewayConfig()
    with pytest.raises(ValueError, match=pattern):
        original.replace(**changes)
    assert original == GatewayConfig()


def test_replace_rejects_an_unknown_field() -> None:
    pattern = r"^GatewayConfig\.__init__\(\) got an unexpected keyword argument 'bogus'$"
    with pytest.raises(TypeError, match=pattern):
        GatewayConfig().replace(bogus=1)


# --------------------------------------------------------------------------- to_dict


def test_to_dict_gives_every_field_as_json_friendly_values(tmp_path: Path) -> None:
    config = GatewayConfig(db_path=tmp_path / "t.db", devices=3)
    out = config.to_dict()
    assert list(out) == ALL_FIELDS
    assert out["db_path"] == str(tmp_path / "t.db")
    assert type(out["db_path"]) is str
    assert out["devices"] == 3
    assert json.loads(json.dumps(out)) == out


def test_to_dict_of_the_defaults() -> None:
    assert GatewayConfig().to_dict() == {
        "devices": 7,
        "clients": 4,
        "duration": 10.0,
        "telemetry_capacity": 50,
        "storage_capacity": 10,
        "broadcast_capacity": 100,
        "batch_size": 10,
        "flush_interval": 5.0,
        "device_bandwidth": 3,
        "db_connections": 2,
        "db_path": "telemetry.db",
        "seed": 42,
        "shutdown_timeout": 5.0,
        "device_interval": 1.5,
        "sample_interval": 0.25,
        "storage_failure_rate": 0.0,
        "storage_outage": None,
        "storage_latency": 0.0,
        "client_delays": [],
        "malformed_rate": 0.0,
        "device_crash_rate": 0.0,
        "retry_initial": 0.1,
        "retry_max_interval": 2.0,
        "retry_max_elapsed": 10.0,
    }


def test_to_dict_round_trips_through_the_constructor() -> None:
    config = GatewayConfig(devices=2, clients=0, duration=1.5, db_path="x.db", seed=1)
    assert GatewayConfig(**config.to_dict()) == config


def test_to_dict_values_are_finite() -> None:
    for value in GatewayConfig().to_dict().values():
        if isinstance(value, float):
            assert math.isfinite(value)
