"""The public API: every module declares a sorted `__all__`, and the package re-exports it."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import telemetry_lab
import telemetry_lab.console
import telemetry_lab.primitives
import telemetry_lab.storage


def isort_style(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then everything else; each sorted."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def public_modules() -> list[ModuleType]:
    modules = []
    for package in (
        telemetry_lab,
        telemetry_lab.console,
        telemetry_lab.primitives,
        telemetry_lab.storage,
    ):
        modules.append(package)
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if not info.name.rsplit(".", 1)[-1].startswith("_") and not info.ispkg:
                modules.append(importlib.import_module(info.name))
    return modules


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_module_declares_sorted_all(module: ModuleType) -> None:
    assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
    assert list(module.__all__) == sorted(module.__all__, key=isort_style)
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name!r}"


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_module_docstring_starts_with_a_summary_line(module: ModuleType) -> None:
    doc = module.__doc__ or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    assert first.endswith((".", ":")), f"{module.__name__}: {first!r}"


def test_primitives_are_reexported_from_the_package() -> None:
    for name in telemetry_lab.primitives.__all__:
        assert getattr(telemetry_lab, name) is getattr(telemetry_lab.primitives, name)
        assert name in telemetry_lab.__all__


def test_errors_are_reexported_and_form_one_tree() -> None:
    from telemetry_lab import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert getattr(telemetry_lab, name) is cls
        assert issubclass(cls, errors.TelemetryLabError)
    channel_errors = set(errors.__all__) - {
        "ChannelError",
        "TelemetryLabError",
        "LoopAlreadyRunning",
        "DeviceCrashed",
        "FutureCancelled",
        "StorageError",
        "TransientStorageError",
        "UnusableDatabase",
    }
    for name in channel_errors:
        assert issubclass(getattr(errors, name), errors.ChannelError), name
    assert issubclass(errors.LoopAlreadyRunning, RuntimeError)
    assert issubclass(errors.UnusableDatabase, ValueError)


def test_contract_names_are_importable_from_both_places() -> None:
    contract = [
        "channel", "broadcast", "watch", "Notify", "JoinSet", "select",
        "Sender", "Receiver", "BroadcastSender", "BroadcastReceiver",
        "WatchSender", "WatchReceiver",
    ]  # fmt: skip
    for name in contract:
        assert hasattr(telemetry_lab.primitives, name), name
        assert hasattr(telemetry_lab, name), name


def test_gateway_contract_names_are_importable_from_the_package() -> None:
    for name in ("GatewayConfig", "run_gateway", "start", "run", "Report"):
        assert name in telemetry_lab.__all__, name
        assert hasattr(telemetry_lab, name), name


def test_package_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("telemetry_lab").joinpath("py.typed").is_file()
