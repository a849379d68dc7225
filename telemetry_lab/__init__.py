"""telemetry_lab: learn asyncio's concurrency primitives by building an async telemetry gateway.

The primitives (`channel`, `broadcast`, `watch`, `Notify`, `JoinSet`, `select`) live in
`telemetry_lab.primitives`; the gateway's API (`GatewayConfig`, `Gateway`, `run_gateway`,
`start`, `run`, `Report`) in `telemetry_lab.config`, `.gateway`, `.entry` and `.models`
(the entry points are importable from `.gateway` too); the error vocabulary in
`telemetry_lab.errors`. All are re-exported here.
"""

import logging

from telemetry_lab.config import LIVE_KNOBS, GatewayConfig, Knobs
from telemetry_lab.console import Console, ConsoleSnapshot, ConsoleWarning, TaskRow
from telemetry_lab.dashboard import Dashboard
from telemetry_lab.entry import run, run_gateway, start
from telemetry_lab.errors import (
    ChannelClosed,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    DeviceCrashed,
    FutureCancelled,
    Lagged,
    LoopAlreadyRunning,
    NoReceivers,
    StorageError,
    TelemetryLabError,
    TransientStorageError,
    UnusableDatabase,
)
from telemetry_lab.gateway import Gateway, GatewayPhase, GatewayStatistics
from telemetry_lab.live_log import compact_log
from telemetry_lab.models import ClientSummary, Reading, Report, StateUpdate, SystemState
from telemetry_lab.primitives import (
    Branch,
    BroadcastReceiver,
    BroadcastReceiverStatistics,
    BroadcastSender,
    BroadcastStatistics,
    ChannelStatistics,
    JoinSet,
    JoinSetStatistics,
    Notified,
    Notify,
    NotifyStatistics,
    Receiver,
    Selectable,
    Selected,
    Sender,
    WatchReceiver,
    WatchSender,
    WatchStatistics,
    broadcast,
    channel,
    on_changed,
    on_deadline,
    on_done,
    on_event,
    on_notified,
    on_recv,
    on_timeout,
    select,
    watch,
)
from telemetry_lab.virtual_time import VirtualTimeEventLoop

logging.getLogger("telemetry_lab").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "LIVE_KNOBS",
    "Branch",
    "BroadcastReceiver",
    "BroadcastReceiverStatistics",
    "BroadcastSender",
    "BroadcastStatistics",
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelError",
    "ChannelFull",
    "ChannelStatistics",
    "ClientSummary",
    "Console",
    "ConsoleSnapshot",
    "ConsoleWarning",
    "Dashboard",
    "DeviceCrashed",
    "FutureCancelled",
    "Gateway",
    "GatewayConfig",
    "GatewayPhase",
    "GatewayStatistics",
    "JoinSet",
    "JoinSetStatistics",
    "Knobs",
    "Lagged",
    "LoopAlreadyRunning",
    "NoReceivers",
    "Notified",
    "Notify",
    "NotifyStatistics",
    "Reading",
    "Receiver",
    "Report",
    "Selectable",
    "Selected",
    "Sender",
    "StateUpdate",
    "StorageError",
    "SystemState",
    "TaskRow",
    "TelemetryLabError",
    "TransientStorageError",
    "UnusableDatabase",
    "VirtualTimeEventLoop",
    "WatchReceiver",
    "WatchSender",
    "WatchStatistics",
    "__version__",
    "broadcast",
    "channel",
    "compact_log",
    "on_changed",
    "on_deadline",
    "on_done",
    "on_event",
    "on_notified",
    "on_recv",
    "on_timeout",
    "run",
    "run_gateway",
    "select",
    "start",
    "watch",
]
