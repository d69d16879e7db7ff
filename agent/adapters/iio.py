"""The crash sensor through Linux's IIO subsystem: find the device, set it up, decode its buffer.

What the kernel gives (Documentation/ABI/testing/sysfs-bus-iio, firmware-config/imu.md):

* ``<sysfs>/iio:deviceN/`` with ``name`` (``mpu6050``), ``sampling_frequency``,
  ``in_accel_scale`` (m/s² per count), ``in_anglvel_scale`` (rad/s per count),
  ``current_timestamp_clock``, ``scan_elements/in_<chan>_{en,index,type}`` and
  ``buffer/{length,watermark,enable}``;
* ``<dev>/iio:deviceN``: a character device whose ``read`` returns whole records of the enabled
  scan elements, and blocks until ``buffer/watermark`` records wait.

A record's layout (:class:`Layout`) is computed from the files, as libiio does: elements in
``_index`` order, each aligned to its own storage size, the record padded to its largest
element. ``be:s16/16>>0`` is a big-endian signed 16-bit value in 16 bits, shifted by 0;
``le:s64/64>>0`` is the kernel's time stamp in nanoseconds on ``current_timestamp_clock``.
A sample is returned as ``(t, ax, ay, az, gx, gy, gz)``: seconds on the monotonic clock, g and
degrees per second in the board's frame (the core turns it into the vehicle's,
:mod:`agent.core.imu_frames`). A device without a gyroscope gives zeros for it.

:func:`setup` writes the settings the detector needs (rate, ±16 g, ±2000 °/s, the channels,
the monotonic time stamps, the buffer's length and watermark, then ``buffer/enable``) and only
those that differ. On a unit it runs as root (``umps-agent imu setup``, started by udev); the
agent itself has ``/sys`` read-only, so :func:`open_device` tries the same settings, and a
setting it cannot write but finds acceptable is no error: what it checks is what detection
needs (:class:`IioError` says what is wrong). The rig's emulated device
(``hil/imu_emulator.py``) is the same files in a directory of its own: nothing here knows.
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

G = 9.80665
# The chips of the inv_mpu6050 driver (firmware-config/imu.md); "auto" takes the first of these.
KNOWN_NAMES = ("mpu6050", "mpu6000", "mpu6500", "mpu6515", "mpu6880", "mpu9150", "mpu9250", "mpu9255",
               "icm20608", "icm20609", "icm20689", "icm20602", "icm20690", "iam20680")
ACCEL = ("in_accel_x", "in_accel_y", "in_accel_z")
GYRO = ("in_anglvel_x", "in_anglvel_y", "in_anglvel_z")
TIMESTAMP = "in_timestamp"
MIN_RANGE_G = 16.0  # a crash at 50 km/h is ~14 g on average: less would clip every impact
ACCEL_SCALE_16G = "0.004785"  # m/s² per count, inv_mpu6050's ±16 g
GYRO_SCALE_2000DPS = "0.001064724"  # rad/s per count, ±2000 °/s
BUFFER_SECONDS = 10.0  # buffer/length in seconds of samples: a busy agent loses none
_TYPE = re.compile(r"^(be|le):([su])(\d+)/(\d+)(?:X(\d+))?>>(\d+)$")


class IioError(RuntimeError):
    """The device is missing, or cannot give what detection needs (the message says which)."""


@dataclass(frozen=True, slots=True)
class Element:
    name: str  # "in_accel_x"
    index: int
    big_endian: bool
    signed: bool
    bits: int
    storage: int  # bits
    shift: int
    offset: int = 0  # in the record, bytes

    @property
    def size(self) -> int:
        return self.storage // 8


def parse_type(name: str, text: str, index: int) -> Element:
    """One ``*_type`` file (``be:s16/16>>0``) as an :class:`Element` (offset filled in later)."""
    m = _TYPE.match(text.strip())
    if not m:
        raise IioError(f"{name}: scan type {text.strip()!r} is not endianness:sign bits/storage>>shift")
    endian, sign, bits, storage, repeat, shift = m.groups()
    if repeat not in (None, "1"):
        raise IioError(f"{name}: repeated scan elements ({text.strip()}) are not supported")
    if int(storage) not in (8, 16, 32, 64) or int(bits) > int(storage):
        raise IioError(f"{name}: storage of {storage} bits is not supported")
    return Element(name, index, endian == "be", sign == "s", int(bits), int(storage), int(shift))


@dataclass(frozen=True, slots=True)
class Layout:
    """The enabled scan elements and where each sits in a record of ``size`` bytes."""

    elements: tuple[Element, ...]
    size: int

    @classmethod
    def of(cls, elements: list[Element]) -> "Layout":
        placed, offset, largest = [], 0, 1
        for el in sorted(elements, key=lambda e: e.index):
            offset = -(-offset // el.size) * el.size  # each element aligned to its own size
            placed.append(Element(el.name, el.index, el.big_endian, el.signed, el.bits, el.storage, el.shift, offset))
            offset += el.size
            largest = max(largest, el.size)
        return cls(tuple(placed), -(-offset // largest) * largest if placed else 0)

    def find(self, name: str) -> Element | None:
        return next((e for e in self.elements if e.name == name), None)


@dataclass(frozen=True, slots=True)
class Device:
    """An IIO device found on the system: its sysfs directory and its buffer's character device."""

    sysfs: Path
    dev: Path
    name: str


def find_device(sysfs_dir: str | Path, dev_dir: str | Path, wanted: str = "auto") -> Device:
    """The device named ``wanted`` (its ``name``, ``iio:deviceN``, or ``auto``); raises IioError."""
    root = Path(sysfs_dir)
    try:
        entries = sorted(p for p in root.iterdir() if p.name.startswith("iio:device"))
    except OSError as exc:
        raise IioError(f"no IIO devices under {root}: {exc.strerror or exc}") from None
    seen = []
    for path in entries:
        name = _read(path / "name", default="")
        seen.append(f"{path.name} ({name or '?'})")
        if wanted == path.name or wanted == name or (wanted == "auto" and name in KNOWN_NAMES):
            return Device(path, Path(dev_dir) / path.name, name)
    known = ", ".join(seen) or "none"
    raise IioError(f"no IIO device {wanted!r} under {root} (found: {known}); see firmware-config/imu.md")


def _read(path: Path, default: str | None = None) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        if default is not None:
            return default
        raise IioError(f"cannot read {path}: {exc.strerror or exc}") from None


def _write(path: Path, value: str) -> bool:
    """Write ``value`` when the file holds something else; False when that is not allowed."""
    try:
        if path.read_text().strip() == value:
            return True
        path.write_text(value + "\n")
        return True
    except OSError:
        return False


def setup(device: Device, *, rate_hz: int, wake_hz: float) -> list[str]:
    """Write what detection needs (see the module docstring); returns the settings not written.

    The buffer is switched off while the rest changes (the kernel refuses most changes while it
    runs) and on again last. Settings that are already right are not rewritten.
    """
    d = device.sysfs
    wanted_channels = {*ACCEL, *GYRO, TIMESTAMP}
    elements = _enabled_or_available(d)
    watermark = max(1, round(rate_hz / wake_hz))
    plan: list[tuple[Path, str]] = [
        (d / "sampling_frequency", str(rate_hz)),
        (d / "in_accel_scale", ACCEL_SCALE_16G),
        (d / "in_anglvel_scale", GYRO_SCALE_2000DPS),
        (d / "current_timestamp_clock", "monotonic"),
    ]
    plan += [(d / "scan_elements" / f"{name}_en", "1" if name in wanted_channels else "0") for name in elements]
    plan += [(d / "buffer" / "length", str(max(int(rate_hz * BUFFER_SECONDS), 2 * watermark))),
             (d / "buffer" / "watermark", str(watermark))]
    if all(_read(path, default="") == value for path, value in plan if path.exists()) and \
            _read(d / "buffer" / "enable", default="") == "1":
        return []
    _write(d / "buffer" / "enable", "0")
    failed = [f"{path.relative_to(d)}={value}" for path, value in plan if path.exists() and not _write(path, value)]
    if not _write(d / "buffer" / "enable", "1"):
        failed.append("buffer/enable=1")
    return failed


def _enabled_or_available(d: Path) -> list[str]:
    try:
        return sorted(p.name[: -len("_en")] for p in (d / "scan_elements").iterdir() if p.name.endswith("_en"))
    except OSError as exc:
        raise IioError(f"{d}: no scan_elements ({exc.strerror or exc}): this device has no buffer") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """What the device reads back, and how to turn its records into samples."""

    layout: Layout
    rate_hz: float
    accel_scale: float  # g per count
    gyro_scale: float  # degrees per second per count (0: no gyroscope)
    clock: str  # current_timestamp_clock

    @property
    def range_g(self) -> float:
        return self.accel_scale * 32768 if self.layout.find("in_accel_x") else 0.0


def read_settings(device: Device) -> Settings:
    """The device's settings, checked against what detection needs (raises IioError)."""
    d = device.sysfs
    elements = []
    for name in _enabled_or_available(d):
        if _read(d / "scan_elements" / f"{name}_en", default="0") != "1":
            continue
        try:
            index = int(_read(d / "scan_elements" / f"{name}_index"))
        except ValueError:
            raise IioError(f"{name}_index is not a number") from None
        elements.append(parse_type(name, _read(d / "scan_elements" / f"{name}_type"), index))
    layout = Layout.of(elements)
    missing = [name for name in (*ACCEL, TIMESTAMP) if layout.find(name) is None]
    if missing:
        raise IioError(f"{device.name}: scan elements {', '.join(missing)} not enabled (run umps-agent imu setup)")
    try:
        accel = float(_read(d / "in_accel_scale")) / G
        gyro = math.degrees(float(_read(d / "in_anglvel_scale", default="0"))) if layout.find(GYRO[0]) else 0.0
        rate = float(_read(d / "sampling_frequency"))
    except ValueError as exc:
        raise IioError(f"{device.name}: unreadable scale or rate ({exc})") from None
    bits = layout.find("in_accel_x").bits  # type: ignore[union-attr]
    settings = Settings(layout, rate, accel, gyro, _read(d / "current_timestamp_clock", default="realtime"))
    full_scale = accel * (1 << (bits - 1))
    if full_scale < MIN_RANGE_G * 0.99:
        raise IioError(f"{device.name}: accelerometer range ±{full_scale:.1f} g; crashes need ±{MIN_RANGE_G:g} g "
                       f"(in_accel_scale {ACCEL_SCALE_16G}: run umps-agent imu setup)")
    return settings


class Decoder:
    """Records to samples ``(t, ax, ay, az, gx, gy, gz)``: monotonic seconds, g, °/s (board frame)."""

    def __init__(self, settings: Settings, clock_offset: float = 0.0):
        self.settings = settings
        self.record = settings.layout.size
        lay = settings.layout
        self._fields = [self._field(lay.find(n)) for n in (*ACCEL, *GYRO)]
        self._ts = self._field(lay.find(TIMESTAMP))
        self._scales = [settings.accel_scale] * 3 + [settings.gyro_scale] * 3
        # Nanoseconds on current_timestamp_clock to monotonic seconds (0 when already monotonic).
        self.clock_offset = clock_offset
        self._rest = b""

    @staticmethod
    def _field(el: Element | None) -> tuple[struct.Struct, int, int, int, bool] | None:
        if el is None:
            return None
        code = {1: "b", 2: "h", 4: "i", 8: "q"}[el.size]
        fmt = (">" if el.big_endian else "<") + (code if el.signed else code.upper())
        return struct.Struct(fmt), el.offset, el.shift, el.bits, el.signed

    @staticmethod
    def _value(field: tuple[struct.Struct, int, int, int, bool], buf: bytes, base: int) -> int:
        st, offset, shift, bits, signed = field
        raw = st.unpack_from(buf, base + offset)[0] >> shift
        if bits < st.size * 8:
            raw &= (1 << bits) - 1
            if signed and raw >= 1 << (bits - 1):
                raw -= 1 << bits
        return raw

    def feed(self, data: bytes) -> list[tuple[float, float, float, float, float, float, float]]:
        """The whole records in ``data`` (a partial one waits for the next call)."""
        buf = self._rest + data if self._rest else data
        whole = len(buf) - len(buf) % self.record
        self._rest = buf[whole:]
        out = []
        ts, fields, scales, value = self._ts, self._fields, self._scales, self._value
        for base in range(0, whole, self.record):
            t = value(ts, buf, base) / 1e9 - self.clock_offset  # type: ignore[arg-type]
            out.append((t, *[value(f, buf, base) * k if f is not None else 0.0 for f, k in zip(fields, scales)]))
        return out  # type: ignore[return-value]


def clock_offset(clock: str) -> float:
    """Seconds to subtract from a time stamp on ``clock`` to get the monotonic clock."""
    if clock == "monotonic":
        return 0.0
    if clock == "boottime":
        return time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    return time.time() - time.monotonic()  # realtime (the kernel's default)


def open_device(sysfs_dir: str | Path, dev_dir: str | Path, wanted: str, *, rate_hz: int,
                wake_hz: float) -> tuple[Device, Settings, int, list[str]]:
    """Find, set up (what it may), check and open the device for reading (non-blocking fd).

    Returns the device, its settings, the open file descriptor and the settings it could not
    write (the caller logs them once). Raises IioError.
    """
    device = find_device(sysfs_dir, dev_dir, wanted)
    not_written = setup(device, rate_hz=rate_hz, wake_hz=wake_hz)
    settings = read_settings(device)
    if _read(device.sysfs / "buffer" / "enable", default="0") != "1":
        raise IioError(f"{device.name}: its buffer is off (run umps-agent imu setup as root)")
    try:
        fd = os.open(device.dev, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise IioError(f"cannot open {device.dev}: {exc.strerror or exc}") from None
    return device, settings, fd, not_written
