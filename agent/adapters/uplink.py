"""The uplink: moves messages from the durable outbox to the MQTT link, and acks back.

What it is for
--------------
The core hands every message to ``submit()``; the uplink stores it in the
outbox (so it survives a crash) and wakes its sender thread, which publishes
it when the link is up and deletes it from the outbox when the broker
acknowledges it. ``submit()`` never waits for the network.

How it works
------------
One sender thread (``uplink``) loops: apply the acknowledgements that paho's
thread queued (ACKED or REFUSED: delete; LOST: back to pending), then, if the
link is up, send in lane order:

1. ``EMERGENCY``, ``STATUS`` (status, call responses, config results), then
   ``LIVE`` telemetry on ``telemetry``; these may use the whole in-flight
   window (``link.max_inflight``).
2. ``BACKLOG``: telemetry on ``telemetry/backlog`` (and crash traces on their own
   ``crash/trace``), oldest first, with at most
   ``backlog_window`` in flight (kept below the link's window so live
   traffic always finds a free slot and never queues behind backlog in paho)
   and, if ``backlog_rate_limit`` is set, at most that many per second.

Live vs backlog: a live report is published on ``telemetry`` only if it can
go now. A report made while the link is down, or superseded by a newer one
before it could be sent, or sent but lost with the connection, goes to the
backlog and is published later on ``telemetry/backlog`` (same payload), so a
live map never jumps back in time while a track history gets every point.

The thread also ticks the outbox's batch commit. Order within a lane is
preserved (records are taken oldest first; a resend goes back in order).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.adapters.mqtt import AckResult
from agent.adapters.outbox import Outbox, OutboxStats, Record
from agent.core import telemetry_cbor
from agent.core.publish import Lane, Publish

log = logging.getLogger(__name__)

BACKLOG_SUFFIX = "/backlog"
LIVE_RESERVE = 8  # in-flight slots backlog may never take
BACKLOG_BATCH = 64  # CBOR reports per backlog PUBLISH (~1 KB); JSON reports are never batched


class Link(Protocol):
    """What the uplink needs from the link (``MqttLink`` provides it)."""

    @property
    def connected(self) -> bool: ...

    @property
    def max_inflight(self) -> int: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_ack: Callable[[AckResult], None] | None = None,
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class UplinkStats:
    link_up: bool
    pending: dict[str, int]
    in_flight: int
    backlog_in_flight: int
    sent_urgent: int
    sent_live: int
    sent_backlog: int
    acked: int
    refused: int
    lost: int
    demoted: int  # live reports that went to the backlog
    loop_errors: int
    outbox: OutboxStats


class Uplink:
    """The sender thread between the outbox and the link. See the module docstring."""

    def __init__(
        self,
        outbox: Outbox,
        link: Link,
        *,
        backlog_window: int = 64,
        backlog_rate_limit: float | None = None,
        idle_wakeup_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if backlog_rate_limit is not None and backlog_rate_limit <= 0:
            raise ValueError("backlog_rate_limit must be positive (or None for no limit)")
        self._outbox = outbox
        self._link = link
        self._window = max(1, link.max_inflight)
        self._backlog_window = max(1, min(backlog_window, self._window - LIVE_RESERVE))
        self._rate = backlog_rate_limit
        self._idle = idle_wakeup_s
        self._clock = clock
        self._cond = threading.Condition()
        self._work = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Filled on paho's thread, emptied by the sender: deque appends are atomic.
        self._acks: collections.deque[tuple[int, bool, AckResult]] = collections.deque()
        self._in_flight = 0
        self._backlog_in_flight = 0
        self._burst = False
        self._batching = True  # the backlog held CBOR reports last time (take a batch's worth)
        self._tokens = 0.0
        self._tokens_at = clock()
        self._counts = collections.Counter[str]()
        self._counts_lock = threading.Lock()  # submit, link_down and the sender all count

    # ------------------------------------------------------------ public

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("uplink already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sender, apply the last acks and commit the outbox (it stays open)."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("uplink sender thread did not stop")
        self._thread = None
        self._apply_acks()
        self._outbox.commit()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, publish: Publish) -> int:
        """Store a message in the outbox and wake the sender. Returns its record id.

        Urgent lanes are fsynced before this returns (a few ms on an SD card);
        telemetry only goes to memory here.
        """
        if publish.lane is Lane.LIVE and not self._link.connected:
            publish = dataclasses.replace(publish, lane=Lane.BACKLOG)
            self._count("demoted")
        rec = self._outbox.put(publish)
        self._wake()
        return rec.id

    def flush_backlog(self) -> None:
        """Remote "flush backlog now": send the backlog without the rate limit until it is empty."""
        self._burst = True
        self._wake()

    def link_up(self, broker: str = "") -> None:
        """Wire to ``MqttLink(on_up=...)``: start sending."""
        self._wake()

    def link_down(self, reason: str = "") -> None:
        """Wire to ``MqttLink(on_down=...)``: unsent live reports become backlog."""
        self._count("demoted", self._outbox.demote_live())
        self._wake()

    def stats(self) -> UplinkStats:
        out = self._outbox.stats()
        with self._counts_lock:
            counts = collections.Counter(self._counts)
        return UplinkStats(
            link_up=self._link.connected,
            pending=out.pending,
            in_flight=self._in_flight,
            backlog_in_flight=self._backlog_in_flight,
            sent_urgent=counts["sent_urgent"],
            sent_live=counts["sent_live"],
            sent_backlog=counts["sent_backlog"],
            acked=counts["acked"],
            refused=counts["refused"],
            lost=counts["lost"],
            demoted=counts["demoted"],
            loop_errors=counts["loop_errors"],
            outbox=out,
        )

    # -------------------------------------------------------- the thread

    def _count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[key] += n

    def _wake(self) -> None:
        with self._cond:
            self._work = True
            self._cond.notify()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._step()
            except Exception:  # the sender must outlive any one bad record
                self._count("loop_errors")
                log.exception("uplink: sender loop failed; going on")
                wait = 1.0
            with self._cond:
                if not self._work and not self._stop.is_set():
                    self._cond.wait(wait)
                self._work = False

    def _step(self) -> float:
        """One pass; returns how long to sleep if nothing wakes us."""
        self._apply_acks()
        wait = self._idle
        if self._link.connected:
            self._send_urgent_and_live()
            wait = min(wait, self._send_backlog())
        self._outbox.maybe_commit()
        return wait

    def _send_urgent_and_live(self) -> None:
        for lane in (Lane.EMERGENCY, Lane.STATUS, Lane.LIVE):
            free = self._window - self._in_flight
            if free <= 0:
                return
            if not self._send(self._outbox.take(lane, free)):
                return

    def _send_backlog(self) -> float:
        free = min(self._backlog_window - self._backlog_in_flight, self._window - LIVE_RESERVE - self._in_flight)
        if free <= 0:
            return self._idle
        if self._rate is not None and not self._burst:
            now = self._clock()
            self._tokens = min(float(self._backlog_window), self._tokens + (now - self._tokens_at) * self._rate)
            self._tokens_at = now
            if self._tokens < 1.0:
                return (1.0 - self._tokens) / self._rate
            free = min(free, int(self._tokens))
        # Up to BACKLOG_BATCH CBOR reports share one PUBLISH; JSON reports go one by one.
        limit = free * (BACKLOG_BATCH if self._batching else 1)
        if self._rate is not None and not self._burst:
            limit = min(limit, int(self._tokens))
        recs = self._outbox.take(Lane.BACKLOG, limit)
        if not recs:
            self._burst = False
            return self._idle
        self._batching = _batchable(recs[-1])
        groups = backlog_batches(recs, BACKLOG_BATCH)
        for rest, _payload in groups[free:]:  # more PUBLISHes than the window allows: later
            for rec in rest:
                self._outbox.nack(rec.id)
        groups = groups[:free]
        if self._rate is not None and not self._burst:
            self._tokens -= sum(len(group) for group, _payload in groups)
        self._send_groups(groups)
        return self._idle

    def _send(self, recs: list[Record]) -> bool:
        """Publish records one per PUBLISH; False (and the rest put back) once the link refuses one."""
        return self._send_groups([([rec], rec.payload) for rec in recs])

    def _send_groups(self, groups: list[tuple[list[Record], bytes]]) -> bool:
        """Publish each group as one PUBLISH; False (and the rest put back) once the link refuses one."""
        for i, (group, payload) in enumerate(groups):
            rec = group[0]
            backlog = rec.lane is Lane.BACKLOG
            # Telemetry that could not go live goes on telemetry/backlog; other backlog-lane messages (a
            # crash trace: bulky, never urgent) keep their own topic.
            topic = rec.topic + BACKLOG_SUFFIX if backlog and rec.seq is not None else rec.topic
            on_ack = self._ack_callback(tuple([r.id for r in group]), backlog)  # of a list: see nmea._gsa
            self._in_flight += 1
            self._backlog_in_flight += backlog
            if not self._link.publish(topic, payload, rec.qos, rec.retain, on_ack):
                self._in_flight -= 1
                self._backlog_in_flight -= backlog
                for rest, _payload in groups[i:]:
                    for r in rest:
                        self._outbox.nack(r.id)
                return False
            key = "sent_backlog" if backlog else ("sent_live" if rec.lane is Lane.LIVE else "sent_urgent")
            self._count(key, len(group))
        return True

    def _ack_callback(self, record_ids: tuple[int, ...], backlog: bool) -> Callable[[AckResult], None]:
        def on_ack(result: AckResult) -> None:  # paho's thread: queue and return
            self._acks.append((record_ids, backlog, result))
            self._wake()

        return on_ack

    def _apply_acks(self) -> None:
        while self._acks:
            record_ids, backlog, result = self._acks.popleft()
            self._in_flight -= 1
            self._backlog_in_flight -= backlog
            for record_id in record_ids:
                if result is AckResult.LOST:
                    self._count("lost")
                    self._outbox.nack(record_id)
                else:
                    self._count("acked" if result is AckResult.ACKED else "refused")
                    self._outbox.ack(record_id)


def backlog_batches(recs: list[Record], size: int) -> list[tuple[list[Record], bytes]]:
    """Each PUBLISH of the backlog: its records and payload.

    Consecutive CBOR reports on one topic share a batch of up to ``size``;
    anything else (JSON, or a record the batch encoder cannot read) goes alone,
    as stored.
    """
    groups: list[list[Record]] = []
    for rec in recs:
        last = groups[-1] if groups else None
        if last and len(last) < size and last[0].topic == rec.topic and _batchable(last[0]) and _batchable(rec):
            last.append(rec)
        else:
            groups.append([rec])
    out: list[tuple[list[Record], bytes]] = []
    for group in groups:
        if len(group) == 1:
            out.append((group, group[0].payload))
            continue
        try:
            out.append((group, telemetry_cbor.encode_batch([r.payload for r in group])))
        except (telemetry_cbor.TelemetryDecodeError, KeyError, TypeError, ValueError):
            log.warning("uplink: %d backlog reports not batchable; sent one by one", len(group))
            out.extend(([r], r.payload) for r in group)
    return out


def _batchable(rec: Record) -> bool:
    return rec.seq is not None and telemetry_cbor.is_cbor(rec.payload) and not telemetry_cbor.is_batch(rec.payload)
