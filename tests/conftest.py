"""Shared fixtures: a real Mosquitto per test, subscribers, the black-holing proxy, test PKI,
one headless Chromium per test process.

Also the ``--run-slow`` option: tests marked ``slow`` run only with it (otherwise deselected).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker, Recorder
from hil.browser import chromium_missing, launch
from hil.pki import TlsFiles, make_pki
from tests.support.netproxy import NetProxy


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--run-slow``, the slow tests are deselected (not thousands of skips to hand out
    to the workers and report one by one)."""
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Make brokers with a custom configuration: ``broker_factory(acl_file=..., tls=...)``.

    Each is started, and stopped by pid at the end of the test.
    """
    made: list[Broker] = []

    def make(**kwargs) -> Broker:
        broker = Broker(tmp_path / f"broker{len(made)}", **kwargs)
        made.append(broker)
        return broker.start()

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    """A plain Mosquitto: anonymous, loopback, a free port."""
    return broker_factory()


@pytest.fixture
def recorder_factory() -> Iterator[Callable[..., Recorder]]:
    """``recorder_factory(broker, topics=["umps/#"])`` -> a started subscriber."""
    made: list[Recorder] = []

    def make(broker: Broker, **kwargs) -> Recorder:
        rec = Recorder(broker, **kwargs)
        made.append(rec)
        return rec.start()

    yield make
    for rec in made:
        rec.stop()


@pytest.fixture
def recorder(broker: Broker, recorder_factory: Callable[..., Recorder]) -> Recorder:
    return recorder_factory(broker, topics=["#"])


@pytest.fixture
def netproxy_factory() -> Iterator[Callable[..., NetProxy]]:
    made: list[NetProxy] = []

    def make(target: tuple[str, int], **kwargs) -> NetProxy:
        proxy = NetProxy(target, **kwargs)
        made.append(proxy)
        return proxy.start()

    yield make
    for proxy in made:
        proxy.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and a server certificate for localhost / 127.0.0.1."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium (``hil.browser``), started once per test process (per xdist worker).

    Each test makes its own context (``browser.new_context()``) and closes it, so
    no page, storage or cookie is shared between tests.
    """
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()
