"""The crash sensor's reader thread against the rig's emulated IIO device (hil/imu_emulator.py).

Real files and a real named pipe: the reader finds, sets up and reads the device as on a unit,
posts batches about ten times a second, drops what waited from before it started, and reports a
device that vanishes and comes back without ever stopping.
"""

from __future__ import annotations

import queue
import time

import pytest

from agent.adapters import iio
from agent.adapters.imu_reader import STALE_S, ImuReader
from agent.config import ImuConfig
from hil.imu_emulator import ImuEmulator
from hil.wait import poll_until


class Sink:
    def __init__(self):
        self.batches: queue.Queue = queue.Queue()
        self.states: queue.Queue = queue.Queue()

    def wait_state(self, want: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state, detail = self.states.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if state == want:
                return detail
        raise AssertionError(f"no {want!r} state within {timeout} s")

    def batches_for(self, seconds: float) -> list:
        out, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.batches.get(timeout=left))
            except queue.Empty:
                break
        return out


@pytest.fixture
def rig(tmp_path):
    emu = ImuEmulator(tmp_path / "imu", background="still").start()
    sink = Sink()
    cfg = ImuConfig(enabled=True, sysfs_dir=emu.sysfs_dir, dev_dir=emu.dev_dir)
    reader = ImuReader(cfg, on_samples=sink.batches.put, on_state=lambda s, d: sink.states.put((s, d)))
    yield emu, sink, reader
    reader.stop()
    emu.stop()


def test_batches_arrive_ten_times_a_second_with_fresh_monotonic_time_stamps(rig):
    emu, sink, reader = rig
    reader.start()
    detail = sink.wait_state("ok")
    assert "mpu6050" in detail and "100 Hz" in detail and "±16 g" in detail
    batches = sink.batches_for(2.0)
    samples = [s for b in batches for s in b]
    assert 150 <= len(samples) <= 230  # 100 Hz
    assert 12 <= len(batches) <= 25  # woken about ten times a second, not a hundred
    now = time.monotonic()
    assert all(now - 3.0 < s[0] <= now + 0.01 for s in samples)
    assert [s[0] for s in samples] == sorted(s[0] for s in samples)
    assert all(abs(s[3] - 1.0) < 0.05 and abs(s[1]) < 0.05 for s in samples)  # 1 g up, flat
    assert reader.counters.range_g > 15.9 and reader.counters.rate_hz == 100  # ±16 g: 0.004785 m/s² a count


def test_what_waited_before_the_reader_started_is_dropped(rig):
    emu, sink, reader = rig
    device = iio.find_device(emu.sysfs_dir, emu.dev_dir)
    iio.setup(device, rate_hz=100, wake_hz=10)  # the buffer runs (udev did it at boot)...
    assert poll_until(lambda: emu.written >= 250, 10.0)  # ...2.5 s of samples wait for an agent not there yet
    started = time.monotonic()
    reader.start()
    first = sink.batches_for(1.0)
    assert reader.counters.stale_dropped >= 100
    assert first and all(s[0] >= started - STALE_S - 0.05 for b in first for s in b)


def test_a_device_that_vanishes_is_reported_and_found_again(rig):
    emu, sink, reader = rig
    reader.start()
    sink.wait_state("ok")
    emu.unplug()
    assert "mpu6050" in sink.wait_state("lost")
    assert reader.alive
    emu.replug()
    sink.wait_state("ok", timeout=15.0)
    assert sink.batches_for(1.5)
    assert reader.counters.losses == 1


def test_a_missing_device_is_reported_once_and_the_reader_keeps_looking(tmp_path):
    sink = Sink()
    cfg = ImuConfig(enabled=True, sysfs_dir=tmp_path / "none", dev_dir=tmp_path)
    reader = ImuReader(cfg, on_samples=sink.batches.put, on_state=lambda s, d: sink.states.put((s, d)))
    reader.start()
    try:
        assert "no IIO devices" in sink.wait_state("lost")
        with pytest.raises(queue.Empty):
            sink.states.get(timeout=2.5)
        assert reader.alive
    finally:
        reader.stop()
