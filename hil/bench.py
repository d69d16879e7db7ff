"""Bench mode: the rig's own GPIO pins wired to a real unit, and NMEA out of a serial port.

On the bench the agent runs on the unit, with its own pins (``lgpio``). The
rig, on a second Raspberry Pi wired pin to pin (``hil/README.md`` has the
table), drives the unit's inputs and reads its outputs through that Pi's
``pigpiod`` with the ``pigpio`` client library:

* a button press drives the line low (output 0) and a release lets it go (input,
  no pull): an open-drain switch, as the unit's pulled-up inputs expect. An
  active-high input is driven high instead. The siren line is driven the same
  way.
* LED and buzzer lines are read as inputs with the rig's pull-down, through
  pigpio edge callbacks; each change is kept with its monotonic arrival time,
  so the scenario engine reads :meth:`BenchPins.history` exactly as it reads
  the emulator's.

:class:`BenchPins` has the part of :class:`hil.gpio_emulator.PigpioEmulator`'s
interface the engine uses (``press``, ``release``, ``hold``, ``bounce``,
``set_input``, ``level``, ``history``, ``stop``), so a scenario runs unchanged.
Because it speaks the pigpio protocol, it is tested against the emulator
standing in for the second Pi's daemon.

:class:`SerialForwarder` copies the GNSS emulator's NMEA (from its TCP port)
to a serial device, reconnecting after an emulated unplug (which the unit then
sees as a silent receiver: the USB adapter itself stays in).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable

from hil.gpio_emulator import PinChange

log = logging.getLogger(__name__)

HISTORY_MAX = 10_000


class BenchPins:
    """Drive and read real pins through a pigpio daemon (the rig's second Pi)."""

    def __init__(self, host: str, port: int, *, read_pins: Iterable[int], configure: bool = True):
        import pigpio  # the hil extra; only needed on the bench

        self._pigpio = pigpio
        self.pi = pigpio.pi(host, port)
        if not self.pi.connected:
            raise ConnectionError(f"no pigpio daemon at {host}:{port}")
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._history: dict[int, deque[PinChange]] = {}
        self._callbacks = []
        self._timers: list[threading.Timer] = []
        for pin in read_pins:
            if configure:  # False when the daemon's pins are already set up (or shared, in tests)
                self.pi.set_mode(pin, pigpio.INPUT)
                self.pi.set_pull_up_down(pin, pigpio.PUD_DOWN)
            self._history[pin] = deque(maxlen=HISTORY_MAX)
            self._record(pin, self.pi.read(pin))
            self._callbacks.append(self.pi.callback(pin, pigpio.EITHER_EDGE, self._edge))

    # ----------------------------------------------------------- reading

    def _edge(self, gpio: int, level: int, tick: int) -> None:
        if level in (0, 1):  # 2 is a watchdog timeout, not an edge
            self._record(gpio, level, tick)

    def _record(self, pin: int, level: int, tick: int = 0) -> None:
        with self._changed:
            hist = self._history[pin]
            if hist and hist[-1].level == level:
                return
            hist.append(PinChange(time.monotonic(), tick, level, None, "input", "unit"))
            self._changed.notify_all()

    def history(self, pin: int) -> list[PinChange]:
        with self._lock:
            return list(self._history.get(pin, ()))

    def level(self, pin: int) -> int:
        return int(self.pi.read(pin))

    def wait_for_level(self, pin: int, level: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: bool(self._history.get(pin)) and self._history[pin][-1].level == level, timeout)

    # ----------------------------------------------------------- driving

    def set_input(self, pin: int, level: int | None) -> None:
        """Drive the unit's input ``pin`` to 0 or 1; ``None`` lets it go (high impedance)."""
        pg = self._pigpio
        if level is None:
            self.pi.set_mode(pin, pg.INPUT)
            self.pi.set_pull_up_down(pin, pg.PUD_OFF)
        elif level in (0, 1):
            self.pi.write(pin, level)  # sets output mode
        else:
            raise ValueError(f"level must be 0, 1 or None, not {level!r}")

    def press(self, pin: int, *, active_low: bool = True) -> None:
        self.set_input(pin, 0 if active_low else 1)

    def release(self, pin: int) -> None:
        self.set_input(pin, None)

    def hold(self, pin: int, seconds: float, *, active_low: bool = True, block: bool = True) -> None:
        self.press(pin, active_low=active_low)
        if block:
            time.sleep(seconds)  # a physical action that lasts, not a wait for a result
            self.release(pin)
        else:
            timer = threading.Timer(seconds, self.release, args=(pin,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def bounce(self, pin: int, n: int = 6, interval: float = 0.002, *, active_low: bool = True) -> None:
        closed = n % 2 == 1
        start = time.monotonic()
        for k in range(n):
            delay = start + k * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if closed:
                self.press(pin, active_low=active_low)
            else:
                self.release(pin)
            closed = not closed

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        # A release already under way finishes before the connection closes under it.
        for t in self._timers:
            t.join(2.0)
            if t.is_alive():
                raise RuntimeError("a timed release of the bench's pins did not finish")
        for cb in self._callbacks:
            cb.cancel()
        self.pi.stop()


class SerialForwarder:
    """Copy NMEA from the emulator's TCP port to a serial device (USB-serial adapter to the unit's UART)."""

    def __init__(self, tcp_port: int, device: str, baudrate: int):
        import serial  # pyserial, a dependency of the agent

        self._serial = serial.serial_for_url(device, baudrate=baudrate, timeout=1, write_timeout=1)
        self.tcp_port = tcp_port
        self.device = device
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nmea-to-serial", daemon=True)

    def start(self) -> "SerialForwarder":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.tcp_port), timeout=1.0)
            except OSError:
                self._stop.wait(0.2)  # the emulated receiver is unplugged: retry
                continue
            with sock:
                sock.settimeout(1.0)
                while not self._stop.is_set():
                    try:
                        data = sock.recv(4096)
                    except socket.timeout:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    self._serial.write(data)
                    self.bytes += len(data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3.0)
        if self._thread.is_alive():
            raise RuntimeError("the NMEA forwarder did not stop")
        self._serial.close()
