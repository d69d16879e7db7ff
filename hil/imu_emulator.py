"""The rig's crash sensor: an MPU-6050 as Linux's IIO subsystem shows it, in a directory.

The agent reads its sensor through sysfs and a character device (agent/adapters/iio.py,
firmware-config/imu.md). This emulator makes the same two things under a directory of its
own, and the agent's ``[imu] sysfs_dir`` and ``dev_dir`` point there; nothing in the agent
knows it is emulated:

* ``<root>/sys/iio:device0/``: the files the ``inv_mpu6050`` driver has, with the driver's
  values at probe (50 Hz, ±2 g, the realtime clock, every channel off, the buffer off):
  ``name``, ``sampling_frequency`` (+ ``_available``), ``in_accel_scale``,
  ``in_anglvel_scale``, ``current_timestamp_clock``, ``scan_elements/*_{en,index,type}``
  (accelerometer 0-2 and gyroscope 4-6 ``be:s16/16>>0``, temperature 3, time stamp 7
  ``le:s64/64>>0``) and ``buffer/{length,watermark,enable}``. Whatever the agent writes
  there is what the emulator then does, as the kernel would.
* ``<root>/dev/iio:device0``: a named pipe carrying the buffer's records, packed from the
  enabled elements exactly as the kernel lays them out, written ``buffer/watermark`` records
  at a time (the agent wakes as it would on the real device). With nobody reading, the pipe
  fills and new samples are dropped, as a full kernel buffer drops them.

What it measures comes from motion profiles (``hil/imu_profiles.py``), in the vehicle's frame,
turned into the board's by the emulator's :class:`~agent.core.imu_frames.Mounting` (flat, x
forward, by default), scaled by the written scale into counts, clipped at the range. Between
profiles the vehicle holds its last attitude: riding vibration while ``background`` is
``"riding"``, a still sensor's noise otherwise (parked, or lying after a crash).

``unplug()`` removes the device (a loose connector: the directory and the pipe vanish);
``replug()`` brings it back as at probe.
"""

from __future__ import annotations

import errno
import math
import os
import random
import shutil
import struct
import threading
import time
from pathlib import Path

from agent.core.imu_frames import Mounting
from hil.imu_profiles import G, Motion, build

NAME = "mpu6050"
DEVICE = "iio:device0"
PROBE_FILES = {
    "name": NAME,
    "sampling_frequency": "50",
    "sampling_frequency_available": "10 20 50 100 200 500",
    "in_accel_scale": "0.000598",
    "in_accel_scale_available": "0.000598 0.001196 0.002392 0.004785",
    "in_anglvel_scale": "0.001064724",
    "in_anglvel_scale_available": "0.000133090 0.000266181 0.000532362 0.001064724",
    "current_timestamp_clock": "realtime",
    "buffer/length": "1",
    "buffer/watermark": "1",
    "buffer/enable": "0",
}
CHANNELS = {  # scan element -> (index, type)
    "in_accel_x": (0, "be:s16/16>>0"), "in_accel_y": (1, "be:s16/16>>0"), "in_accel_z": (2, "be:s16/16>>0"),
    "in_temp": (3, "be:s16/16>>0"),
    "in_anglvel_x": (4, "be:s16/16>>0"), "in_anglvel_y": (5, "be:s16/16>>0"), "in_anglvel_z": (6, "be:s16/16>>0"),
    "in_timestamp": (7, "le:s64/64>>0"),
}


class ImuEmulator:
    """See the module docstring. ``start()``, ``play(name)``, ``stop()``."""

    def __init__(self, root: str | Path, *, mounting: Mounting | None = None, seed: int = 1,
                 background: str = "riding", kind: str = "motorcycle"):
        self.root = Path(root)
        self.sysfs_dir = self.root / "sys"
        self.dev_dir = self.root / "dev"
        self.mounting = mounting or Mounting.from_axes("+x", "+z")
        self.background = background
        self.kind = kind
        self._rng = random.Random(seed)
        self._seed = seed
        self._lock = threading.Lock()
        self._queue: list[tuple[tuple[float, float, float], tuple[float, float, float]]] = []
        self._queue_at = 0  # next sample of the queue
        self._up = (0.0, 0.0, 1.0)  # the attitude held between profiles (vehicle frame)
        self._impact_offsets: list[int] = []  # sample numbers of the playing profile's impacts
        self.impacts: list[float] = []  # monotonic times (the records' clock) of the impacts played
        self.dropped = 0  # samples lost because nobody read
        self.written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._present = False
        self._next_t: float | None = None  # time stamp of the next sample while enabled

    # ------------------------------------------------------------ device

    @property
    def device(self) -> Path:
        return self.sysfs_dir / DEVICE

    def _create(self) -> None:
        d = self.device
        (d / "buffer").mkdir(parents=True, exist_ok=True)
        (d / "scan_elements").mkdir(parents=True, exist_ok=True)
        for rel, value in PROBE_FILES.items():
            (d / rel).write_text(value + "\n")
        for name, (index, kind) in CHANNELS.items():
            (d / "scan_elements" / f"{name}_en").write_text("0\n")
            (d / "scan_elements" / f"{name}_index").write_text(f"{index}\n")
            (d / "scan_elements" / f"{name}_type").write_text(kind + "\n")
        self.dev_dir.mkdir(parents=True, exist_ok=True)
        pipe = self.dev_dir / DEVICE
        if not pipe.exists():
            os.mkfifo(pipe, 0o660)
        # Read-write so that opening never waits for a reader and a vanished reader is no error.
        self._fd = os.open(pipe, os.O_RDWR | os.O_NONBLOCK)
        self._present = True
        self._next_t = None

    def unplug(self) -> None:
        """The device vanishes: its sysfs directory and its pipe are gone."""
        with self._lock:
            self._present = False
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            shutil.rmtree(self.device, ignore_errors=True)
            (self.dev_dir / DEVICE).unlink(missing_ok=True)

    def replug(self) -> None:
        with self._lock:
            if not self._present:
                self._create()

    def start(self) -> "ImuEmulator":
        self._create()
        self._thread = threading.Thread(target=self._run, name="imu-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # ----------------------------------------------------------- motion

    def rate_hz(self) -> int:
        try:
            return int(self._attr("sampling_frequency"))
        except (OSError, ValueError):
            return 50

    def play(self, name: str, seed: int | None = None) -> float:
        """Play a named profile (``hil/imu_profiles.py``) at the device's rate; its length in s."""
        profile = build(name, rate_hz=self.rate_hz(), seed=self._seed if seed is None else seed)
        motion = profile.motion
        with self._lock:
            start = len(self._queue) - self._queue_at
            self._queue = self._queue[self._queue_at:] + [(a, w) for _t, a, w in motion.samples]
            self._queue_at = 0
            self._impact_offsets += [start + round(t * motion.rate_hz) for t in motion.impacts]
            self._up = motion.up()
            if motion.speed <= 0.3:
                self.background = "still"
        return profile.duration

    def ride(self) -> None:
        """Back to riding vibration (upright) between profiles."""
        with self._lock:
            self._up, self.background = (0.0, 0.0, 1.0), "riding"

    def park(self) -> None:
        with self._lock:
            self.background = "still"

    def hold(self, lean_deg: float = 0.0, pitch_deg: float = 0.0) -> None:
        """Stand still at this lean (right positive) and pitch: a stand, a held motorcycle."""
        m = Motion()
        m.lean, m.pitch = lean_deg, pitch_deg
        with self._lock:
            self._up, self.background = m.up(), "still"

    def _next_sample(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        if self._queue_at < len(self._queue):
            sample = self._queue[self._queue_at]
            self._queue_at += 1
            if self._queue_at == len(self._queue):
                self._queue, self._queue_at = [], 0
            return sample
        sigma = 0.05 if self.background == "riding" else 0.003
        up = self._up
        a = (up[0] + self._rng.gauss(0, sigma), up[1] + self._rng.gauss(0, sigma), up[2] + self._rng.gauss(0, sigma))
        gs = 0.8 if self.background == "riding" else 0.05
        return a, (self._rng.gauss(0, gs), self._rng.gauss(0, gs), self._rng.gauss(0, gs))

    # -------------------------------------------------------- the kernel

    def _attr(self, rel: str) -> str:
        return (self.device / rel).read_text().strip()

    def _layout(self) -> tuple[list[tuple[str, int, struct.Struct]], int]:
        enabled = []
        for name, (index, _kind) in CHANNELS.items():
            if self._attr(f"scan_elements/{name}_en") == "1":
                enabled.append((index, name))
        fields, offset, largest = [], 0, 1
        for _index, name in sorted(enabled):
            size = 8 if name == "in_timestamp" else 2
            offset = -(-offset // size) * size
            fields.append((name, offset, struct.Struct("<q" if size == 8 else ">h")))
            offset += size
            largest = max(largest, size)
        return fields, -(-offset // largest) * largest if fields else 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._step()
            except OSError:
                wait = 0.1  # unplugged under our feet: try again
            self._stop.wait(wait)

    def _step(self) -> float:
        with self._lock:
            if not self._present or self._fd is None:
                return 0.1
            if self._attr("buffer/enable") != "1":
                self._next_t = None
                return 0.05
            rate = int(self._attr("sampling_frequency"))
            watermark = max(1, int(self._attr("buffer/watermark")))
            accel_scale = float(self._attr("in_accel_scale"))
            gyro_scale = float(self._attr("in_anglvel_scale"))
            clock = self._attr("current_timestamp_clock")
            fields, size = self._layout()
            now = time.monotonic()
            if self._next_t is None:
                self._next_t = now
            due = int((now - self._next_t) * rate) + 1
            if due < watermark or not fields:
                return max(0.001, (watermark - due) / rate)
            offset = 0.0 if clock == "monotonic" else time.time() - time.monotonic()
            record = bytearray(size * due)
            for k in range(due):
                t = self._next_t + k / rate
                if self._impact_offsets and self._impact_offsets[0] <= 0:
                    self._impact_offsets.pop(0)
                    self.impacts.append(t)
                self._impact_offsets = [o - 1 for o in self._impact_offsets]
                a, w = self._next_sample()
                a, w = self.mounting.to_board(a), self.mounting.to_board(w)
                values = {
                    "in_accel_x": a[0] * G / accel_scale, "in_accel_y": a[1] * G / accel_scale,
                    "in_accel_z": a[2] * G / accel_scale,
                    "in_anglvel_x": math.radians(w[0]) / gyro_scale, "in_anglvel_y": math.radians(w[1]) / gyro_scale,
                    "in_anglvel_z": math.radians(w[2]) / gyro_scale, "in_temp": 0.0,
                }
                for name, at, st in fields:
                    if name == "in_timestamp":
                        st.pack_into(record, k * size + at, int((t + offset) * 1e9))
                    else:
                        st.pack_into(record, k * size + at, max(-32768, min(32767, round(values[name]))))
            self._next_t += due / rate
            # Whole records at most PIPE_BUF (4096) bytes a write: each write lands whole or not at all.
            chunk = max(size, 4096 // size * size)
            for start in range(0, len(record), chunk):
                try:
                    os.write(self._fd, bytes(record[start:start + chunk]))
                    self.written += min(chunk, len(record) - start) // size
                except OSError as exc:
                    if exc.errno != errno.EAGAIN:
                        raise
                    self.dropped += min(chunk, len(record) - start) // size  # the pipe is full: nobody reads
            return max(0.001, watermark / rate)
