"""Replay memory: the requests a unit already acted on, kept until they expire.

A signed request is proof of what an admin or a dispatcher said, not of when:
captured off the broker it could be sent again. Every signed request carries
``expires``; the unit keeps the key of each one it accepted until that time,
and refuses (commands, config pushes) or drops (dispatch messages) a second
copy. The running agent keeps this memory on disk
(:class:`agent.adapters.replay_store.ReplayStore`), so a restart does not
reopen the window; :class:`RecentIds` is the in-memory form for tools and
tests.

Keys: ``cmd:<id>`` and ``config/set:<id>`` for admin requests (an id is used
once), and ``<topic>:<sha256 of the signed bytes>`` for dispatch messages,
whose ``id`` names a call or an alarm that several messages share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from typing import Protocol


class ReplayUnavailable(RuntimeError):
    """The memory cannot be read (a failing card): what it would say cannot be trusted."""


class ReplayMemory(Protocol):
    def seen(self, key: str) -> bool:
        """Was ``key`` accepted before (and not yet expired)? Raises :class:`ReplayUnavailable`
        when the memory cannot be read."""

    def remember(self, key: str, until: dt.datetime | None, now: dt.datetime) -> bool:
        """Keep ``key`` until ``until``; False when the memory is full and kept nothing."""


def request_key(purpose: str, request_id: str) -> str:
    return f"{purpose}:{request_id}"


def message_key(purpose: str, signed: bytes) -> str:
    return f"{purpose}:{hashlib.sha256(signed).hexdigest()}"


class RecentIds:
    """In-memory :class:`ReplayMemory`, bounded: entries leave when they expire,
    or oldest first beyond ``capacity``."""

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self._until: OrderedDict[str, dt.datetime | None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._until

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, key: str) -> bool:
        return key in self._until

    def remember(self, key: str, until: dt.datetime | None, now: dt.datetime) -> bool:
        for old in [k for k, t in self._until.items() if t is not None and t <= now]:
            del self._until[old]
        self._until[key] = until
        self._until.move_to_end(key)
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)
        return True


class WithSpare:
    """A durable memory with a spare one in RAM, for the dispatch path (calls, alarm answers).

    That path must never be refused for want of a disk: what the durable memory
    cannot read or keep (a failing or full card) the spare keeps while the unit
    runs, and a copy seen by either is a copy. A restart forgets the spare: a
    dispatch message accepted meanwhile could then pass again within its life
    (at most an hour), which its own rules bound (a call already closed stays
    closed; an alarm answer names its alarm).
    """

    def __init__(self, durable: ReplayMemory, spare: RecentIds | None = None):
        self.durable = durable
        self.spare = spare if spare is not None else RecentIds()

    def seen(self, key: str) -> bool:
        if self.spare.seen(key):
            return True
        try:
            return self.durable.seen(key)
        except ReplayUnavailable:
            return False

    def remember(self, key: str, until: dt.datetime | None, now: dt.datetime) -> bool:
        try:
            if self.durable.remember(key, until, now):
                return True
        except ReplayUnavailable:
            pass
        return self.spare.remember(key, until, now)
