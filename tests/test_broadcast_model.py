"""Check `broadcast(capacity)` against a reference model under random interleavings.

The model is deliberately naive: it keeps every value ever sent, one cursor per receiver,
and, per sent position, the set of receivers that still owe a read of it. The channel is
retained = the last `capacity` positions; everything else follows from that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from telemetry_lab.errors import ChannelClosed, ChannelEmpty, Lagged, NoReceivers
from telemetry_lab.primitives.broadcast import (
    BroadcastReceiver,
    BroadcastReceiverStatistics,
    BroadcastSender,
    BroadcastStatistics,
    broadcast,
)

MAX_RECEIVERS = 6
MAX_SENDERS = 4
pick = st.integers(min_value=0, max_value=15)  # an index, taken modulo the list length


@dataclass
class ModelReceiver:
    rid: int
    cursor: int
    closed: bool = False
    received: int = 0
    lagged: int = 0
    lag_events: int = 0


@dataclass
class ModelChannel:
    capacity: int
    sent: list[int] = field(default_factory=list)
    # owed[p]: ids of receivers subscribed when position p was sent that have neither read
    # it nor closed.
    owed: list[set[int]] = field(default_factory=list)
    open_senders: int = 1
    total_lagged: int = 0

    @property
    def total(self) -> int:
        return len(self.sent)

    @property
    def oldest(self) -> int:
        return max(0, self.total - self.capacity)

    def buffer_used(self) -> int:
        return sum(1 for p in range(self.oldest, self.total) if self.owed[p])


class BroadcastMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = ModelChannel(capacity=1)
        self.senders: list[BroadcastSender[int]] = []
        self.sender_open: list[bool] = []
        self.receivers: list[BroadcastReceiver[int]] = []
        self.rmodels: list[ModelReceiver] = []
        self.next_value = 1000

    # --- helpers ---------------------------------------------------------------------------

    def open_receivers(self) -> list[ModelReceiver]:
        return [m for m in self.rmodels if not m.closed]

    def add_receiver(self, rx: BroadcastReceiver[int]) -> None:
        self.receivers.append(rx)
        self.rmodels.append(ModelReceiver(rid=len(self.rmodels), cursor=self.model.total))

    # --- rules -----------------------------------------------------------------------------

    @initialize(capacity=st.integers(min_value=1, max_value=6))
    def create(self, capacity: int) -> None:
        self.model = ModelChannel(capacity=capacity)
        tx, rx = broadcast(capacity)
        self.senders.append(tx)
        self.sender_open.append(True)
        self.add_receiver(rx)

    @rule(i=pick)
    def send(self, i: int) -> None:
        i %= len(self.senders)
        value = self.next_value
        self.next_value += 1
        tx = self.senders[i]
        if not self.sender_open[i]:
            with pytest.raises(ChannelClosed) as closed:
                tx.send(value)
            assert closed.value.value == value
            return
        subscribed = self.open_receivers()
        if not subscribed:
            with pytest.raises(NoReceivers) as none:
                tx.send(value)
            assert none.value.value == value
            return
        assert tx.send(value) == len(subscribed)
        self.model.sent.append(value)
        self.model.owed.append({m.rid for m in subscribed})

    @precondition(lambda self: len(self.receivers) < MAX_RECEIVERS)
    @rule(i=pick)
    def subscribe(self, i: int) -> None:
        i %= len(self.senders)
        if not self.sender_open[i]:
            with pytest.raises(ChannelClosed):
                self.senders[i].subscribe()
            return
        self.add_receiver(self.senders[i].subscribe())

    @precondition(lambda self: len(self.receivers) < MAX_RECEIVERS)
    @rule(i=pick)
    def resubscribe(self, i: int) -> None:
        i %= len(self.receivers)
        if self.rmodels[i].closed:
            with pytest.raises(ChannelClosed):
                self.receivers[i].resubscribe()
            return
        self.add_receiver(self.receivers[i].resubscribe())

    @rule(i=pick)
    def try_recv(self, i: int) -> None:
        i %= len(self.receivers)
        rx, m, model = self.receivers[i], self.rmodels[i], self.model
        if m.closed:
            with pytest.raises(ChannelClosed):
                rx.try_recv()
            return
        if m.cursor < model.oldest:
            skipped = model.oldest - m.cursor
            with pytest.raises(Lagged) as lagged:
                rx.try_recv()
            assert lagged.value.skipped == skipped
            m.cursor = model.oldest
            m.lagged += skipped
            m.lag_events += 1
            model.total_lagged += skipped
        elif m.cursor < model.total:
            assert rx.try_recv() == model.sent[m.cursor]
            model.owed[m.cursor].discard(m.rid)
            m.cursor += 1
            m.received += 1
        elif model.open_senders:
            with pytest.raises(ChannelEmpty):
                rx.try_recv()
        else:
            with pytest.raises(ChannelClosed) as closed:
                rx.try_recv()
            assert closed.value.value is None

    @rule(i=pick)
    def close_receiver(self, i: int) -> None:
        i %= len(self.receivers)
        self.receivers[i].close()
        m = self.rmodels[i]
        if not m.closed:
            m.closed = True
            for p in range(m.cursor, self.model.total):
                self.model.owed[p].discard(m.rid)

    @precondition(lambda self: len(self.senders) < MAX_SENDERS)
    @rule(i=pick)
    def clone_sender(self, i: int) -> None:
        i %= len(self.senders)
        if not self.sender_open[i]:
            with pytest.raises(ChannelClosed):
                self.senders[i].clone()
            return
        self.senders.append(self.senders[i].clone())
        self.sender_open.append(True)
        self.model.open_senders += 1

    @rule(i=pick)
    def close_sender(self, i: int) -> None:
        i %= len(self.senders)
        self.senders[i].close()
        if self.sender_open[i]:
            self.sender_open[i] = False
            self.model.open_senders -= 1

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def receivers_agree(self) -> None:
        for rx, m in zip(self.receivers, self.rmodels, strict=True):
            if m.closed:
                continue
            assert len(rx) == self.model.total - m.cursor
            assert rx.statistics() == BroadcastReceiverStatistics(
                current_pending=self.model.total - m.cursor,
                total_received=m.received,
                total_lagged=m.lagged,
                total_lag_events=m.lag_events,
            )

    @invariant()
    def senders_agree(self) -> None:
        model = self.model
        expected_len = model.buffer_used()
        assert expected_len <= model.capacity
        for tx, is_open in zip(self.senders, self.sender_open, strict=True):
            if not is_open:
                continue
            assert len(tx) == expected_len
            assert tx.receiver_count == len(self.open_receivers())
            assert tx.statistics() == BroadcastStatistics(
                max_buffer_size=model.capacity,
                current_buffer_used=expected_len,
                current_receivers=len(self.open_receivers()),
                open_send_handles=model.open_senders,
                tasks_waiting_receive=0,
                total_sent=model.total,
                total_lagged=model.total_lagged,
            )


BroadcastMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)
TestBroadcastModel = BroadcastMachine.TestCase
