"""The concurrency primitives that Tokio has and asyncio lacks.

| Tokio                 | here                   |
|-----------------------|------------------------|
| `mpsc::channel(n)`    | `channel(n)`           |
| `broadcast::channel`  | `broadcast(n)`         |
| `watch::channel(v)`   | `watch(v)`             |
| `Notify`              | `Notify`               |
| `JoinSet`             | `JoinSet`              |
| `select!`             | `select(on_recv(rx), on_timeout(1.0), ...)` |
"""

from telemetry_lab.primitives.broadcast import (
    BroadcastReceiver,
    BroadcastReceiverStatistics,
    BroadcastSender,
    BroadcastStatistics,
    broadcast,
)
from telemetry_lab.primitives.joinset import JoinSet, JoinSetStatistics
from telemetry_lab.primitives.mpsc import ChannelStatistics, Receiver, Sender, channel
from telemetry_lab.primitives.notify import Notified, Notify, NotifyStatistics
from telemetry_lab.primitives.select import (
    Branch,
    Selectable,
    Selected,
    on_changed,
    on_deadline,
    on_done,
    on_event,
    on_notified,
    on_recv,
    on_timeout,
    select,
)
from telemetry_lab.primitives.watch import WatchReceiver, WatchSender, WatchStatistics, watch

__all__ = [
    "Branch",
    "BroadcastReceiver",
    "BroadcastReceiverStatistics",
    "BroadcastSender",
    "BroadcastStatistics",
    "ChannelStatistics",
    "JoinSet",
    "JoinSetStatistics",
    "Notified",
    "Notify",
    "NotifyStatistics",
    "Receiver",
    "Selectable",
    "Selected",
    "Sender",
    "WatchReceiver",
    "WatchSender",
    "WatchStatistics",
    "broadcast",
    "channel",
    "on_changed",
    "on_deadline",
    "on_done",
    "on_event",
    "on_notified",
    "on_recv",
    "on_timeout",
    "select",
    "watch",
]
