"""The bench's rig: the scenario engine's (``hil.engine.Rig``), set up as a vehicle.

The benchmarks stand the unit up with the same rig as the scenarios and the
end-to-end tests: a private Mosquitto on a free port, the GPIO and GNSS
emulators, the rig's recorder on ``<prefix>/<unit>/#`` and the agent process
(``hil.agent_proc``). What the bench sets differently, so that its figures
are a vehicle's:

* the broker's only listener is TLS with client certificates required, as a
  fleet's broker does (``hil.pki``), and every client has its certificate;
* the agent trusts a fleet admin's key, so remote requests must be signed;
* the agent keeps a vehicle's timings (no ``QUICK_TIMINGS``), MQTT 5, its
  runtime dir on a tmpfs as on the unit (``/run/umps-agent``), display none,
  the UI on a free port for cars only;
* the emulators also stamp time: :class:`TimedPigpio` when each level report
  leaves for the client (after the glitch filter, i.e. after the debounce
  time), :class:`TimedGnss` the wall-clock time at which each epoch's bytes
  were written, keyed by the epoch's UTC time; the receiver's UTC starts at
  the system clock's, as a real one in sync would;
* without a GNSS rate, no GNSS emulator (the button and call benchmarks).

The agent runs unmodified; only its config differs from a vehicle's. Its
memory and CPU figures include what a vehicle's security costs (TLS, the
signature checker).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import ROOT, Skip, free_port, mosquitto_binary, wait_port
from hil.engine import Rig as HilRig
from hil.engine import RigOptions
from hil.gnss_emulator import GnssEmulator
from hil.gnss_sources import RouteSource
from hil.gpio_emulator import PigpioEmulator

UNIT = "BENCH-01"
PREFIX = "umps"

# The agent's default input pins (agent.config._default_inputs), all pulled up.
INPUT_PINS = {
    "available": 5, "en_route": 6, "on_scene": 13, "busy": 19, "out_of_service": 26,
    "ack": 16, "emergency": 20, "siren": 21,
}


# ------------------------------------------------------------- emulators


class TimedPigpio(PigpioEmulator):
    """The pigpio emulator, also stamping when each level report is sent."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reports: list[tuple[int, int, float]] = []  # (pin, level, monotonic)

    def _report_level(self, pin: int, level: int, tick: int) -> None:
        before = self._reported
        super()._report_level(pin, level, tick)
        if self._reported != before:
            self.reports.append((pin, level, time.monotonic()))

    def report_after(self, pin: int, level: int, since: float) -> float | None:
        with self._lock:
            for p, lv, t in reversed(self.reports):
                if t < since:
                    break
                if p == pin and lv == level:
                    return t
        return None


class TimedGnss(GnssEmulator):
    """The GNSS emulator, also stamping the wall time each epoch went out, by its UTC."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent_at: dict[str, float] = {}  # epoch UTC "HH:MM:SS.ss" -> time.time() after the write
        # The receiver's UTC minus the system clock (s), known once started: the
        # agent takes its time from the GNSS, so its stamps are on this timeline.
        self.utc_offset_s = 0.0

    def start(self, *, run_thread: bool = True) -> None:
        super().start(run_thread=run_thread)
        wall_at_t0 = time.time() - (time.monotonic() - self._t0)
        self.utc_offset_s = self._stream.start_utc.timestamp() - wall_at_t0

    def _emit(self, t: float):
        emission = super()._emit(t)
        if emission.heard and emission.truth is not None:
            self.sent_at[emission.truth.utc.strftime("%H:%M:%S.%f")[:11]] = time.time()
        return emission

    def emitted_wall(self, fix_time: dt.datetime) -> float | None:
        return self.sent_at.get(fix_time.astimezone(dt.timezone.utc).strftime("%H:%M:%S.%f")[:11])


def topic(name: str) -> str:
    """How the rig's recorder names a topic of the unit (relative to ``<prefix>/<unit>/``)."""
    return name


def outside(full_topic: str) -> str:
    """How the rig's recorder names a topic outside the unit's (a peer's)."""
    return "/" + full_topic


# ----------------------------------------------------------- the rig


class Rig(HilRig):
    """The scenario rig as the bench wants it; ``start()`` / ``stop()``."""

    def __init__(self, *, kind: str = "motorcycle", gnss_rate_hz: int | None = None, ui: bool = False,
                 extra_ptys: int = 0, overrides: dict | None = None) -> None:
        if mosquitto_binary() is None:
            raise Skip("mosquitto is not installed (Debian package mosquitto; `make test` installs it)")
        if not Path(ROOT / "agent" / "runtime.py").exists():
            raise Skip("agent/runtime.py is not there yet: `umps-agent run` cannot start the agent")
        workdir = Path(tempfile.mkdtemp(prefix="bench-rig-"))
        shm = Path("/dev/shm")
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="bench-run-", dir=shm)) if shm.is_dir() else None
        source = None
        if gnss_rate_hz:
            # Whole centiseconds: NMEA times carry two decimals, so the epochs' UTC is exact.
            now = dt.datetime.now(dt.timezone.utc)
            source = RouteSource(auto_tunnel=False, start_utc=now.replace(microsecond=now.microsecond // 10_000 * 10_000))
        # The fleet admin's key: the agent trusts its public half, as a vehicle does.
        self.admin_key = Ed25519PrivateKey.generate()
        self.ui_enabled = ui
        agent = {
            "unit": {"name": "Bench unit"},
            "gnss": {"baudrate": 115200},
            "mqtt": {"protocol": "5", "reconnect_min_s": 0.2, "reconnect_max_s": 2.0},
            "ui": {"enabled": ui, "host": "127.0.0.1", "language": "fr", "theme": "day", "sound": False},
        }
        for section, values in (overrides or {}).items():
            agent[section] = {**agent.get(section, {}), **values}
        super().__init__(RigOptions(
            workdir=workdir, unit_id=UNIT, unit_kind=kind, prefix=PREFIX, gnss_rate_hz=gnss_rate_hz or 0,
            gnss_source=source, gnss_emulator=TimedGnss, gpio_emulator=TimedPigpio, extra_gnss_ptys=extra_ptys,
            tls=True, admin_key=self.admin_key, broker_persistence=False, quick_timings=False,
            runtime_dir=self.runtime_dir, ui_port=free_port() if ui else None, agent_overrides=agent,
            online_timeout_s=30.0,
        ))

    @property
    def watcher(self):
        """The rig's recorder (``hil.recorder``) on the unit's topics."""
        return self.tap

    def watch(self, full_topic: str) -> str:
        """Record one more topic (a peer's); returns the name its messages are recorded under."""
        assert self.tap is not None
        self.tap.client.subscribe(full_topic, 1)
        return outside(full_topic)

    def start(self) -> "Rig":
        """Up, and ready: online, its status published, the touchscreen server listening (cars)."""
        self.up()
        try:
            assert self.tap is not None and self.agent is not None
            if self.tap.wait_message(lambda m: m.topic == topic("status"), 10.0) is None:
                raise RuntimeError(f"the agent did not publish its status:\n{self.agent.output_tail()}")
            if self.ui_enabled and not wait_port("127.0.0.1", self.ui_port, 10.0):
                raise RuntimeError(f"the touchscreen server did not listen on {self.ui_port}:\n"
                                   f"{self.agent.output_tail()}")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}/"

    def stop(self) -> dict:
        """Tear down; returns what is worth reporting (agent exit code, log tail)."""
        info: dict = {"agent_exit": self.down()}
        if self.agent is not None:
            info["agent_log_tail"] = self.agent.output_tail(1500)
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            info["workdir"] = str(self.workdir)
        return info
