"""A real Mosquitto for each test, and a subscriber that records what it sees.

Theory of operation
-------------------
``Broker`` is the rig's launcher (``hil.broker``: ``mosquitto`` from PATH on
a free loopback port with a configuration file written for that test, stopped
by its pid, ``kill9()``/``restart()``, ``log_text()``); here a missing
Mosquitto skips the test with a clear message instead of failing it.

``Recorder`` is the rig's recorder (``hil.recorder``): it subscribes to
topics and records every message; ``wait_for(predicate, timeout)`` blocks on
a condition until the recorded messages satisfy the predicate, and fails the
test with a useful message otherwise (tests never assert after a bare sleep).
``wait_until`` is the rig's wait helper (``hil.wait``): its timeout is an
``AssertionError`` that fails the test.

Tests never use a broker that was already running.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from hil.broker import Broker as _Broker
from hil.broker import BrokerUnavailable, TlsListener, free_port, wait_port, write_password_file
from hil.broker import mosquitto_path as _mosquitto_path
from hil.pki import TlsFiles
from hil.recorder import ClientTls
from hil.recorder import Message as Received
from hil.recorder import Recorder as _Recorder
from hil.wait import wait_until  # the rig's one wait helper; its timeout fails the test

__all__ = [
    "Broker", "Received", "Recorder", "TlsListener", "free_port", "mosquitto_path", "wait_port", "wait_until",
    "write_password_file",
]


def mosquitto_path() -> str:
    try:
        return _mosquitto_path()
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))


class Broker(_Broker):
    """The rig's broker launcher; a test without Mosquitto is skipped, not failed."""

    def __init__(self, workdir: Path, **kwargs) -> None:
        mosquitto_path()
        super().__init__(workdir, **kwargs)


# --------------------------------------------------------------- recorder


class Recorder(_Recorder):
    """The rig's recorder (``hil.recorder``) on a test's broker; a wait that times out fails the test."""

    def __init__(self, broker: _Broker, topics: Iterable[str] = ("#",), *, client_id: str | None = None,
                 username: str | None = None, password: str | None = None, tls: TlsFiles | None = None,
                 client_cert: tuple[Path, Path] | None = None, persistent: bool = False) -> None:
        self.broker = broker
        client_tls = None
        if tls is not None:
            cert, key = client_cert or (None, None)
            client_tls = ClientTls(tls.ca_cert, cert, key)
        super().__init__(broker.host, broker.port, topics, client_id=client_id, tls=client_tls,
                         username=username, password=password, persistent=persistent)

    def start(self, timeout: float = 10.0) -> Recorder:
        try:
            super().start(timeout)
        except TimeoutError:
            raise TimeoutError(f"recorder did not subscribe:\n{self.broker.log_text()}") from None
        return self

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        """After a broker restart: wait until paho has reconnected and subscribed again."""
        if not super().wait_subscribed(timeout):
            raise TimeoutError(f"recorder did not resubscribe:\n{self.broker.log_text()}")
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        return super().publish(topic, payload, qos=qos, retain=retain, wait=True)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float, what: str = "") -> list[Received]:
        """Block until ``predicate(messages)`` is true; fail the test after ``timeout`` s."""
        if super().wait_for(lambda messages: predicate(messages) or None, timeout) is None:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}; "
                        f"{len(self.messages)} messages seen, last: {self.messages[-3:]!r}")
        return self.snapshot()

    def wait_json(self, topic: str, predicate: Callable[[dict], bool] = lambda body: True,
                  timeout: float = 10.0, what: str = "") -> dict:
        """The newest JSON body on ``topic`` for which ``predicate`` holds, waiting for one."""

        def matching(messages: list[Received]) -> list[dict]:
            bodies = (json.loads(m.payload) for m in messages if m.topic == topic and m.payload)
            return [body for body in bodies if predicate(body)]

        return matching(self.wait_for(lambda ms: bool(matching(ms)), timeout, what or topic))[-1]
