"""A pigpio daemon look-alike: the GPIO bank of an emulated Raspberry Pi 4 B.

Why pigpio
----------
The agent under test must run unmodified, with its normal configuration;
only its gpiozero pin factory may differ. gpiozero drives remote pins through
the pigpio daemon's socket protocol (``PiGPIOFactory(host, port)``, or the
environment ``GPIOZERO_PIN_FACTORY=pigpio PIGPIO_ADDR=127.0.0.1
PIGPIO_PORT=<port>``), so the rig serves that protocol on loopback and stands
where ``pigpiod`` would. Everything the agent's gpiozero sends is a real
command on a real socket; every edge it sees is a real notification report.

The protocol (pigpio 1.78, ``pigpio.py`` and the daemon's socket handler)
-------------------------------------------------------------------------
- A command is 16 bytes, four little-endian uint32: ``cmd, p1, p2, p3``;
  ``p3`` is the length of an extension that follows (read and, here, ignored
  by every implemented command). The reply is 16 bytes: ``cmd, p1, p2, res``;
  ``res`` is the result, negative (two's complement) on error.
- Notifications: the client opens a second connection, reads bank 1 (``BR1``)
  and sends ``NOIB`` on it, which makes that socket an in-band notification
  channel and returns its handle. ``NB handle bits`` (on the control socket)
  starts reports for the GPIOs in ``bits``; ``NP`` pauses; ``NC`` closes (the
  client sends it on the notification socket; the reply wakes its thread).
- A report is 12 bytes, ``<HHII``: ``seqno`` (per handle, from 0), ``flags``
  (0 for a level change; ``0x40`` keep-alive, sent after 60 s of silence;
  ``0x80 | n`` event n), ``tick`` (µs since boot, wrapping at 2³²),
  ``level`` (all of GPIO 0-31 as the notification system sees them).
- The glitch filter (``FG gpio steady_us``, what gpiozero's ``bounce_time``
  sets) holds a level change back until the level has been steady for
  ``steady_us``, then reports it with the tick at which it became steady;
  shorter pulses are never reported. It does not affect ``READ``.

Implemented commands: MODES 0, MODEG 1, PUD 2, READ 3, WRITE 4, PWM 5,
PRS 6, PFS 7, BR1 10, BR2 11, BC1 12, BC2 13, BS1 14, BS2 15, TICK 16,
HWVER 17, NB 19, NP 20, NC 21, PRG 22, PFG 23, PRRG 24, PIGPV 26, GDC 83,
FG 97, NOIB 99, EVM 115, EVT 116. Anything else gets ``PI_UNKNOWN_COMMAND``
(-88) and is counted in ``stats["unknown"]`` so a scenario can flag it.

The emulated bank
-----------------
GPIO 0-53 with the BCM2711 power-on pulls (0-8 up, the rest down), modes,
output latches, software PWM (default range 255, 800 Hz; frequencies snap to
pigpio's table for its default 5 µs sample rate), and what the rig connects
to the pins from outside. A pin's level is: its latch when it is an output
(a PWM output reads 1 while its duty is above 0); otherwise what the rig
drives it to; otherwise its pull (up reads 1; down and floating read 0).

The rig's side
--------------
``press``/``release``/``hold``/``bounce`` act like a push button wired to the
pin: pressing connects it to ground (``active_low``, the usual wiring with a
pull-up) or to 3.3 V; releasing *opens* the contact, so the pin then reads
what its pull gives, as on the real board (an agent that forgot its pull-up
sees a floating pin). ``set_input(pin, level)`` drives a line hard, like the
siren relay's output; ``None`` disconnects it. ``level``, ``duty``,
``history`` and ``wait_for_level`` read the agent's LEDs and buzzer; every
level or duty change of a pin is kept with its monotonic time and tick.

Boot pulls and the first edge: the pigpio client library learns the pin
levels once, when it connects (``BR1``), and afterwards only from reports. If
the agent then turns on a pull-up on a pin that booted pulled down (GPIO 9-27
on a Pi 4), the client still believes the pin is low, so the first press
(high to low) goes unnoticed: a known pigpio behaviour (joan2937/pigpio#385),
faithfully reproduced here, that the unit in the vehicle (local pins) does not
have. ``boot_pulls={17: "up"}`` sets the pulls the board has at power-on, as
a ``gpio=17=ip,pu`` line in the unit's ``config.txt`` would; give the rig the
same pulls the agent's configuration asks for. An agent that stops leaves its
inputs floating (gpiozero's close), so the rig sets them again with
``set_pulls`` before it starts the next agent.

Stop the agent's factory (``factory.close()``) before ``stop()``: the pigpio
client library spins on a closed notification socket if the daemon goes away
under it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import socket
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

def _pull_codes(pulls: dict[int, str]) -> dict[int, int]:
    by_name = {name: code for code, name in PULL_NAMES.items()}
    for pin, pull in pulls.items():
        _check_pin(pin)
        if pull not in by_name:
            raise ValueError(f"boot pull for GPIO {pin} must be one of {sorted(by_name)}, not {pull!r}")
    return {pin: by_name[pull] for pin, pull in pulls.items()}


# --------------------------------------------------------------- protocol

CMD_MODES, CMD_MODEG, CMD_PUD, CMD_READ, CMD_WRITE, CMD_PWM, CMD_PRS, CMD_PFS = 0, 1, 2, 3, 4, 5, 6, 7
CMD_BR1, CMD_BR2, CMD_BC1, CMD_BC2, CMD_BS1, CMD_BS2, CMD_TICK, CMD_HWVER = 10, 11, 12, 13, 14, 15, 16, 17
CMD_NB, CMD_NP, CMD_NC, CMD_PRG, CMD_PFG, CMD_PRRG, CMD_PIGPV = 19, 20, 21, 22, 23, 24, 26
CMD_GDC, CMD_FG, CMD_NOIB, CMD_EVM, CMD_EVT = 83, 97, 99, 115, 116

PI_BAD_USER_GPIO = -2
PI_BAD_GPIO = -3
PI_BAD_MODE = -4
PI_BAD_LEVEL = -5
PI_BAD_PUD = -6
PI_BAD_DUTYCYCLE = -8
PI_BAD_DUTYRANGE = -21
PI_NO_HANDLE = -24
PI_BAD_HANDLE = -25
PI_UNKNOWN_COMMAND = -88
PI_NOT_PWM_GPIO = -92
PI_BAD_FILTER = -125
PI_BAD_EVENT_ID = -143

INPUT, OUTPUT, ALT5, ALT4, ALT0, ALT1, ALT2, ALT3 = 0, 1, 2, 3, 4, 5, 6, 7
MODE_NAMES = {INPUT: "input", OUTPUT: "output", ALT0: "alt0", ALT1: "alt1", ALT2: "alt2", ALT3: "alt3", ALT4: "alt4", ALT5: "alt5"}
PUD_OFF, PUD_DOWN, PUD_UP = 0, 1, 2
PULL_NAMES = {PUD_OFF: "floating", PUD_DOWN: "down", PUD_UP: "up"}

NTFY_FLAGS_EVENT = 1 << 7
NTFY_FLAGS_ALIVE = 1 << 6

MAX_GPIO = 53
MAX_USER_GPIO = 31
NOTIFY_SLOTS = 32
MAX_EXTENSION = 64 * 1024
MAX_CONNECTIONS = 64
KEEPALIVE_US = 60_000_000
PIGPIO_VERSION = 79
PI4B_REVISION = 0xC03111  # Raspberry Pi 4 Model B rev 1.1, 4 GB, Sony UK

# pigpio's PWM frequencies and real ranges at its default 5 µs sample rate.
PWM_FREQS = (8000, 4000, 2000, 1600, 1000, 800, 500, 400, 320, 250, 200, 160, 100, 80, 50, 40, 20, 10)
PWM_REAL_RANGES = (25, 50, 100, 125, 200, 250, 400, 500, 625, 800, 1000, 1250, 2000, 2500, 4000, 5000, 10000, 20000)
DEFAULT_PWM_FREQ = 800
DEFAULT_PWM_RANGE = 255
HISTORY_MAX = 10_000
JOIN_TIMEOUT_S = 3.0
SEND_TIMEOUT_S = 2.0

_CMD = struct.Struct("<IIII")
_REPORT = struct.Struct("<HHII")


@dataclass(frozen=True, slots=True)
class PinChange:
    """A pin's level or PWM duty changed; ``by`` is ``agent`` or ``rig``."""

    mono: float
    tick: int
    level: int
    duty: float | None  # fraction 0..1 while PWM is on, else None
    mode: str
    by: str


class _Gpio:
    __slots__ = (
        "mode", "pud", "latch", "drive", "pwm", "duty", "range", "freq",
        "steady_us", "gf_changed_tick", "gf_seq", "history",
    )

    def __init__(self, number: int):
        self.mode = INPUT
        self.pud = PUD_UP if number <= 8 else PUD_DOWN
        self.latch = 0
        self.drive: int | None = None
        self.pwm = False
        self.duty = 0
        self.range = DEFAULT_PWM_RANGE
        self.freq = DEFAULT_PWM_FREQ
        self.steady_us = 0
        self.gf_changed_tick = 0
        self.gf_seq = 0  # bumps on every change: a stale filter deadline sees it moved on
        self.history: deque[PinChange] = deque(maxlen=HISTORY_MAX)

    def level(self) -> int:
        if self.mode == OUTPUT:
            if self.pwm:
                return 1 if self.duty > 0 else 0
            return self.latch
        if self.drive is not None:
            return self.drive
        return 1 if self.pud == PUD_UP else 0

    def duty_fraction(self) -> float | None:
        if self.mode == OUTPUT and self.pwm:
            return self.duty / self.range if self.range else 0.0
        return None


class _Conn:
    """One client socket: its reader thread and a lock for whole writes."""

    def __init__(self, sock: socket.socket, peer: tuple):
        self.sock = sock
        self.peer = peer
        self.send_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.closed = False

    def send(self, data: bytes) -> bool:
        with self.send_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@dataclass(slots=True)
class _Notify:
    conn: _Conn
    bits: int = 0
    event_bits: int = 0
    running: bool = False
    seqno: int = 0
    last_report_tick: int = 0


class PigpioEmulator:
    """Serve the pigpio socket protocol on loopback for gpiozero's PiGPIOFactory."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hardware_revision: int = PI4B_REVISION,
        boot_pulls: dict[int, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.host = host
        self.port = port
        self.hardware_revision = hardware_revision
        self._clock = clock
        self._boot = clock() - 1.0  # the daemon has been up a moment
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._gpio = [_Gpio(n) for n in range(MAX_GPIO + 1)]
        self._notify: dict[int, _Notify] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        for pin, code in _pull_codes(boot_pulls or {}).items():
            self._gpio[pin].pud = code
        self._reported = self._bank1_physical()  # level bank as notifications see it
        self._conns: list[_Conn] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._timer_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.stats: Counter[str] = Counter()
        self.commands: Counter[int] = Counter()

    # ---------------------------------------------------------- lifecycle

    def start(self) -> "PigpioEmulator":
        if self._listener is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="pigpio-emu-accept", daemon=True)
        self._timer_thread = threading.Thread(target=self._timer_loop, name="pigpio-emu-timer", daemon=True)
        self._accept_thread.start()
        self._timer_thread.start()
        log.info("pigpio emulator listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
            self._changed.notify_all()
        for c in conns:
            c.close()
        threads = [self._accept_thread, self._timer_thread] + [c.thread for c in conns]
        for t in threads:
            if t is not None and t is not threading.current_thread():
                t.join(JOIN_TIMEOUT_S)
                if t.is_alive():
                    raise RuntimeError(f"pigpio emulator thread {t.name} did not stop")
        self._accept_thread = self._timer_thread = None

    def __enter__(self) -> "PigpioEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._conns)

    def tick(self) -> int:
        """Microseconds since the emulated boot, wrapping like pigpio's."""
        return int((self._clock() - self._boot) * 1_000_000) & 0xFFFFFFFF

    # ------------------------------------------------------------ rig side

    def set_input(self, pin: int, level: int | None) -> None:
        """Drive ``pin`` from outside to 0 or 1; ``None`` leaves it open."""
        _check_pin(pin)
        if level not in (0, 1, None):
            raise ValueError(f"level must be 0, 1 or None, not {level!r}")
        with self._lock:
            self._change(pin, lambda g: setattr(g, "drive", level), by="rig")

    def press(self, pin: int, *, active_low: bool = True) -> None:
        """Close the button's contact: to ground (active low) or to 3.3 V."""
        self.set_input(pin, 0 if active_low else 1)

    def release(self, pin: int) -> None:
        """Open the button's contact; the pin reads what its pull gives."""
        self.set_input(pin, None)

    def hold(self, pin: int, seconds: float, *, active_low: bool = True, block: bool = True) -> None:
        """Press for ``seconds`` then release (in the background if not ``block``)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.press(pin, active_low=active_low)
        if block:
            self._stopping.wait(seconds)
            self.release(pin)
        else:
            self._call_at(self._clock() + seconds, lambda: self.release(pin))

    def bounce(self, pin: int, n: int = 6, interval: float = 0.002, *, active_low: bool = True) -> None:
        """A bouncy press: ``n`` contact changes ``interval`` s apart, ending closed.

        Blocks for about ``n * interval`` seconds. With an odd ``n`` the first
        change closes the contact; the sequence always ends pressed.
        """
        if n < 1 or interval <= 0:
            raise ValueError("bounce needs n >= 1 and interval > 0")
        closed = n % 2 == 1
        start = time.monotonic()
        for k in range(n):
            target = start + k * interval
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # timing a physical action, not waiting for a result
            if closed:
                self.press(pin, active_low=active_low)
            else:
                self.release(pin)
            closed = not closed

    def level(self, pin: int) -> int:
        _check_pin(pin)
        with self._lock:
            return self._gpio[pin].level()

    def duty(self, pin: int) -> float | None:
        """PWM duty as a fraction while PWM runs on the pin, else ``None``."""
        _check_pin(pin)
        with self._lock:
            return self._gpio[pin].duty_fraction()

    def frequency(self, pin: int) -> int | None:
        _check_pin(pin)
        with self._lock:
            g = self._gpio[pin]
            return g.freq if g.pwm and g.mode == OUTPUT else None

    def set_pulls(self, pulls: dict[int, str]) -> None:
        """Set pins' pulls as the board has them at power-on (``"up"``, ``"down"``, ``"floating"``).

        The rig calls it before each agent start: an agent that stopped left its input
        pins floating (gpiozero's close), and the next one would otherwise meet the
        pigpio first-edge behaviour described above, which the vehicle's local pins do
        not have.
        """
        codes = _pull_codes(pulls)
        with self._lock:
            for pin, code in codes.items():
                self._change(pin, lambda g, code=code: setattr(g, "pud", code), by="board")

    def mode(self, pin: int) -> str:
        _check_pin(pin)
        with self._lock:
            return MODE_NAMES[self._gpio[pin].mode]

    def pull(self, pin: int) -> str:
        _check_pin(pin)
        with self._lock:
            return PULL_NAMES[self._gpio[pin].pud]

    def glitch_filter_us(self, pin: int) -> int:
        _check_pin(pin)
        with self._lock:
            return self._gpio[pin].steady_us

    def history(self, pin: int) -> list[PinChange]:
        """Every level/duty change of ``pin``, oldest first (bounded)."""
        _check_pin(pin)
        with self._lock:
            return list(self._gpio[pin].history)

    def wait_for_level(self, pin: int, level: int, timeout: float) -> bool:
        """Block until ``pin`` reads ``level``; False after ``timeout`` s."""
        _check_pin(pin)
        with self._changed:
            return self._changed.wait_for(lambda: self._gpio[pin].level() == level, timeout)

    def wait_for(self, predicate: Callable[["PigpioEmulator"], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds (checked on pin and client changes)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def trigger_event(self, event: int) -> None:
        """Signal pigpio event ``event`` (0-31) to notifications watching it."""
        if not 0 <= event <= 31:
            raise ValueError("event must be 0-31")
        with self._lock:
            self._emit_event(event)

    # ------------------------------------------------------ pin mechanics

    def _bank1_physical(self) -> int:
        bits = 0
        for n in range(MAX_USER_GPIO + 1):
            if self._gpio[n].level():
                bits |= 1 << n
        return bits

    def _change(self, pin: int, mutate: Callable[[_Gpio], None], *, by: str) -> None:
        """Apply ``mutate`` to a pin; record, notify and filter what changed."""
        g = self._gpio[pin]
        before = (g.level(), g.duty_fraction(), g.mode)
        mutate(g)
        after = (g.level(), g.duty_fraction(), g.mode)
        if after == before:
            return
        tick = self.tick()
        if after[:2] != before[:2]:
            g.history.append(PinChange(self._clock(), tick, after[0], after[1], MODE_NAMES[g.mode], by))
        if after[0] != before[0] and pin <= MAX_USER_GPIO:
            self._level_changed(pin, after[0], tick)
        self._changed.notify_all()

    def _level_changed(self, pin: int, level: int, tick: int) -> None:
        g = self._gpio[pin]
        g.gf_seq += 1
        g.gf_changed_tick = tick
        if g.steady_us <= 0:
            self._report_level(pin, level, tick)
            return
        seq = g.gf_seq
        self._call_at(self._clock() + g.steady_us / 1_000_000, lambda: self._filter_due(pin, seq))

    def _filter_due(self, pin: int, seq: int) -> None:
        with self._lock:
            g = self._gpio[pin]
            if g.gf_seq != seq:
                return  # it changed again: not steady
            level = g.level()
            if bool(self._reported >> pin & 1) != bool(level):
                self._report_level(pin, level, (g.gf_changed_tick + g.steady_us) & 0xFFFFFFFF)

    def _report_level(self, pin: int, level: int, tick: int) -> None:
        bit = 1 << pin
        new = (self._reported | bit) if level else (self._reported & ~bit)
        if new == self._reported:
            return
        self._reported = new
        for handle, n in list(self._notify.items()):
            if n.running and n.bits & bit:
                self._send_report(handle, n, 0, tick, new)

    def _emit_event(self, event: int) -> None:
        tick = self.tick()
        for handle, n in list(self._notify.items()):
            if n.event_bits & (1 << event):
                self._send_report(handle, n, NTFY_FLAGS_EVENT | event, tick, self._reported)

    def _send_report(self, handle: int, n: _Notify, flags: int, tick: int, level: int) -> None:
        data = _REPORT.pack(n.seqno & 0xFFFF, flags, tick & 0xFFFFFFFF, level & 0xFFFFFFFF)
        n.seqno = (n.seqno + 1) & 0xFFFF
        n.last_report_tick = tick
        if n.conn.send(data):
            self.stats["reports"] += 1
        else:  # the client went away: the daemon closes such a notification
            self._notify.pop(handle, None)

    # --------------------------------------------------------------- timers

    def _call_at(self, when: float, fn: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._timers, (when, next(self._timer_ids), fn))
            self._changed.notify_all()

    def _timer_loop(self) -> None:
        next_keepalive = self._clock() + 1.0
        while not self._stopping.is_set():
            due: list[Callable[[], None]] = []
            with self._changed:
                now = self._clock()
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers)[2])
                if not due:
                    wait = min(next_keepalive, self._timers[0][0] if self._timers else next_keepalive) - now
                    # Woken early by any pin change; that is harmless.
                    self._changed.wait(max(0.0, min(wait, 1.0)))
            for fn in due:
                try:
                    fn()
                except Exception:  # a timer must not kill the thread
                    log.exception("pigpio emulator timer failed")
            if self._clock() >= next_keepalive:
                next_keepalive = self._clock() + 1.0
                self._keepalive()

    def _keepalive(self) -> None:
        with self._lock:
            tick = self.tick()
            for handle, n in list(self._notify.items()):
                if ((tick - n.last_report_tick) & 0xFFFFFFFF) > KEEPALIVE_US:
                    self._send_report(handle, n, NTFY_FLAGS_ALIVE, tick, self._reported)

    # --------------------------------------------------------- the sockets

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._stopping.is_set() and listener is not None:
            try:
                sock, peer = listener.accept()
            except OSError:
                break  # listener closed by stop()
            with self._lock:
                if len(self._conns) >= MAX_CONNECTIONS:
                    sock.close()
                    self.stats["refused"] += 1
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(SEND_TIMEOUT_S)
                conn = _Conn(sock, peer)
                conn.thread = threading.Thread(target=self._serve, args=(conn,), name=f"pigpio-emu-{peer[1]}", daemon=True)
                self._conns.append(conn)
                self._changed.notify_all()
            conn.thread.start()

    def _serve(self, conn: _Conn) -> None:
        try:
            while not self._stopping.is_set():
                header = self._recv_exact(conn, 16)
                if header is None:
                    break
                cmd, p1, p2, p3 = _CMD.unpack(header)
                if p3:
                    if p3 > MAX_EXTENSION or self._recv_exact(conn, p3) is None:
                        break  # as the daemon does: no point continuing
                res = self._execute(conn, cmd, p1, p2)
                conn.send(_CMD.pack(cmd, p1, p2, res & 0xFFFFFFFF))
        finally:
            with self._lock:
                for handle in [h for h, n in self._notify.items() if n.conn is conn]:
                    del self._notify[handle]
                if conn in self._conns:
                    self._conns.remove(conn)
                self._changed.notify_all()  # someone may wait for clients == 0
            conn.close()

    def _recv_exact(self, conn: _Conn, size: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < size:
            try:
                chunk = conn.sock.recv(size - len(buf))
            except socket.timeout:
                if self._stopping.is_set():
                    return None
                continue  # an idle client is fine
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    # ------------------------------------------------------------ commands

    def _execute(self, conn: _Conn, cmd: int, p1: int, p2: int) -> int:
        self.commands[cmd] += 1
        with self._lock:
            handler = _HANDLERS.get(cmd)
            if handler is None:
                self.stats["unknown"] += 1
                log.warning("pigpio emulator: unimplemented command %d (p1=%d p2=%d)", cmd, p1, p2)
                return PI_UNKNOWN_COMMAND
            return handler(self, conn, p1, p2)

    def _cmd_modes(self, conn: _Conn, gpio: int, mode: int) -> int:
        if gpio > MAX_GPIO:
            return PI_BAD_GPIO
        if mode > ALT3:
            return PI_BAD_MODE

        def mutate(g: _Gpio) -> None:
            if mode != OUTPUT:
                g.pwm = False  # pigpio switches PWM off when the pin leaves output
            g.mode = mode

        self._change(gpio, mutate, by="agent")
        return 0

    def _cmd_modeg(self, conn: _Conn, gpio: int, _p2: int) -> int:
        return PI_BAD_GPIO if gpio > MAX_GPIO else self._gpio[gpio].mode

    def _cmd_pud(self, conn: _Conn, gpio: int, pud: int) -> int:
        if gpio > MAX_GPIO:
            return PI_BAD_GPIO
        if pud > PUD_UP:
            return PI_BAD_PUD
        self._change(gpio, lambda g: setattr(g, "pud", pud), by="agent")
        return 0

    def _cmd_read(self, conn: _Conn, gpio: int, _p2: int) -> int:
        return PI_BAD_GPIO if gpio > MAX_GPIO else self._gpio[gpio].level()

    def _cmd_write(self, conn: _Conn, gpio: int, level: int) -> int:
        if gpio > MAX_GPIO:
            return PI_BAD_GPIO
        if level > 1:
            return PI_BAD_LEVEL

        def mutate(g: _Gpio) -> None:
            # A write stops PWM and makes the pin an output, as pigpio does.
            g.pwm = False
            g.latch = level
            g.mode = OUTPUT

        self._change(gpio, mutate, by="agent")
        return 0

    def _cmd_pwm(self, conn: _Conn, gpio: int, duty: int) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        if duty > self._gpio[gpio].range:
            return PI_BAD_DUTYCYCLE

        def mutate(g: _Gpio) -> None:
            g.pwm = True
            g.duty = duty
            g.mode = OUTPUT

        self._change(gpio, mutate, by="agent")
        return 0

    def _cmd_prs(self, conn: _Conn, gpio: int, rng: int) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        if not 25 <= rng <= 40000:
            return PI_BAD_DUTYRANGE
        self._change(gpio, lambda g: setattr(g, "range", rng), by="agent")
        return _real_range(self._gpio[gpio].freq)

    def _cmd_pfs(self, conn: _Conn, gpio: int, freq: int) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        chosen = min(PWM_FREQS, key=lambda f: (abs(f - freq), -f))
        self._change(gpio, lambda g: setattr(g, "freq", chosen), by="agent")
        return chosen

    def _cmd_bank_read(self, conn: _Conn, _p1: int, _p2: int, *, bank: int) -> int:
        lo, hi = (0, 31) if bank == 1 else (32, MAX_GPIO)
        bits = 0
        for n in range(lo, hi + 1):
            if self._gpio[n].level():
                bits |= 1 << (n - lo)
        return bits

    def _cmd_bank_write(self, conn: _Conn, bits: int, _p2: int, *, bank: int, level: int) -> int:
        lo = 0 if bank == 1 else 32
        for i in range(32):
            n = lo + i
            if n <= MAX_GPIO and bits >> i & 1:
                def mutate(g: _Gpio) -> None:
                    g.latch = level  # the set/clear registers only move latches

                self._change(n, mutate, by="agent")
        return 0

    def _cmd_tick(self, conn: _Conn, _p1: int, _p2: int) -> int:
        return self.tick()

    def _cmd_hwver(self, conn: _Conn, _p1: int, _p2: int) -> int:
        return self.hardware_revision

    def _cmd_pigpv(self, conn: _Conn, _p1: int, _p2: int) -> int:
        return PIGPIO_VERSION

    def _cmd_noib(self, conn: _Conn, _p1: int, _p2: int) -> int:
        free = [h for h in range(NOTIFY_SLOTS) if h not in self._notify]
        if not free:
            return PI_NO_HANDLE
        # A socket has at most one notification: reopening closes the orphan.
        for h in [h for h, n in self._notify.items() if n.conn is conn]:
            del self._notify[h]
        self._notify[free[0]] = _Notify(conn, last_report_tick=self.tick())
        return free[0]

    def _cmd_nb(self, conn: _Conn, handle: int, bits: int) -> int:
        n = self._notify.get(handle)
        if n is None:
            return PI_BAD_HANDLE
        n.bits = bits
        n.running = True
        return 0

    def _cmd_np(self, conn: _Conn, handle: int, _p2: int) -> int:
        n = self._notify.get(handle)
        if n is None:
            return PI_BAD_HANDLE
        n.running = False
        return 0

    def _cmd_nc(self, conn: _Conn, handle: int, _p2: int) -> int:
        if self._notify.pop(handle, None) is None:
            return PI_BAD_HANDLE
        return 0

    def _cmd_prg(self, conn: _Conn, gpio: int, _p2: int) -> int:
        return PI_BAD_USER_GPIO if gpio > MAX_USER_GPIO else self._gpio[gpio].range

    def _cmd_pfg(self, conn: _Conn, gpio: int, _p2: int) -> int:
        return PI_BAD_USER_GPIO if gpio > MAX_USER_GPIO else self._gpio[gpio].freq

    def _cmd_prrg(self, conn: _Conn, gpio: int, _p2: int) -> int:
        return PI_BAD_USER_GPIO if gpio > MAX_USER_GPIO else _real_range(self._gpio[gpio].freq)

    def _cmd_gdc(self, conn: _Conn, gpio: int, _p2: int) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        g = self._gpio[gpio]
        return g.duty if g.pwm and g.mode == OUTPUT else PI_NOT_PWM_GPIO

    def _cmd_fg(self, conn: _Conn, gpio: int, steady: int) -> int:
        if gpio > MAX_USER_GPIO:
            return PI_BAD_USER_GPIO
        if steady > 300_000:
            return PI_BAD_FILTER
        g = self._gpio[gpio]
        g.steady_us = steady
        g.gf_seq += 1  # a pending verdict under the old setting no longer applies
        return 0

    def _cmd_evm(self, conn: _Conn, handle: int, bits: int) -> int:
        n = self._notify.get(handle)
        if n is None:
            return PI_BAD_HANDLE
        n.event_bits = bits
        return 0

    def _cmd_evt(self, conn: _Conn, event: int, _p2: int) -> int:
        if event > 31:
            return PI_BAD_EVENT_ID
        self._emit_event(event)
        return 0


def _real_range(freq: int) -> int:
    return PWM_REAL_RANGES[PWM_FREQS.index(freq)] if freq in PWM_FREQS else DEFAULT_PWM_RANGE


def _check_pin(pin: int) -> None:
    if not isinstance(pin, int) or not 0 <= pin <= MAX_GPIO:
        raise ValueError(f"GPIO must be 0-{MAX_GPIO}, not {pin!r}")


_HANDLERS: dict[int, Callable[..., int]] = {
    CMD_MODES: PigpioEmulator._cmd_modes,
    CMD_MODEG: PigpioEmulator._cmd_modeg,
    CMD_PUD: PigpioEmulator._cmd_pud,
    CMD_READ: PigpioEmulator._cmd_read,
    CMD_WRITE: PigpioEmulator._cmd_write,
    CMD_PWM: PigpioEmulator._cmd_pwm,
    CMD_PRS: PigpioEmulator._cmd_prs,
    CMD_PFS: PigpioEmulator._cmd_pfs,
    CMD_BR1: lambda self, c, a, b: self._cmd_bank_read(c, a, b, bank=1),
    CMD_BR2: lambda self, c, a, b: self._cmd_bank_read(c, a, b, bank=2),
    CMD_BC1: lambda self, c, a, b: self._cmd_bank_write(c, a, b, bank=1, level=0),
    CMD_BC2: lambda self, c, a, b: self._cmd_bank_write(c, a, b, bank=2, level=0),
    CMD_BS1: lambda self, c, a, b: self._cmd_bank_write(c, a, b, bank=1, level=1),
    CMD_BS2: lambda self, c, a, b: self._cmd_bank_write(c, a, b, bank=2, level=1),
    CMD_TICK: PigpioEmulator._cmd_tick,
    CMD_HWVER: PigpioEmulator._cmd_hwver,
    CMD_NB: PigpioEmulator._cmd_nb,
    CMD_NP: PigpioEmulator._cmd_np,
    CMD_NC: PigpioEmulator._cmd_nc,
    CMD_PRG: PigpioEmulator._cmd_prg,
    CMD_PFG: PigpioEmulator._cmd_pfg,
    CMD_PRRG: PigpioEmulator._cmd_prrg,
    CMD_PIGPV: PigpioEmulator._cmd_pigpv,
    CMD_GDC: PigpioEmulator._cmd_gdc,
    CMD_FG: PigpioEmulator._cmd_fg,
    CMD_NOIB: PigpioEmulator._cmd_noib,
    CMD_EVM: PigpioEmulator._cmd_evm,
    CMD_EVT: PigpioEmulator._cmd_evt,
}
